/* pipeline._fastfp: the optional C fast path of the SQL fingerprint (see pipeline/fingerprint/fast.py).
 *
 * Why C: fast.py's Python passes over a statement never seen cost ~70-100 ns per C call, ~1 us per regex pass
 * and a dict lookup per token, 8.4 us for the typical 69-character statement against the 5 us budget. Here the
 * same passes run over the characters once: the guard, the tokens, the keywords, the sign drops and the spacing.
 *
 * fingerprint(shape) mirrors fast.py's fast_fingerprint up to its _lists() step, pass for pass (each step below
 * names the Python it stands for), and returns None wherever that code refuses: the guard (_ACCEPTED), TRUE,
 * FALSE and CAST, an empty list item, a name before a value. The IN-list and VALUES-row collapsing stays in
 * Python (fast._lists, run only when the result holds "IN (" or "VALUES ("). Refusing is always safe: the
 * caller then reads the statement with the full normaliser.
 *
 * The keywords come from Python once, at import (configure(fast._TOKENS)), so normalise.KEYWORDS stays the one
 * source of truth: each upper-case word maps to its output with a class mark as its last character.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

/* Longest keyword this table takes: a longer word is never a keyword (configure() refuses longer keys). */
#define WORD_MAX 32
/* Class marks of fast.py's _TOKENS values: \x02 keyword, \x03 NULL/END/%s, \x04 function keyword, \x05 refused. */
#define MARK_FUNCTION '\x04'
#define MARK_REFUSED '\x05'

typedef struct {
    char key[WORD_MAX];    /* the upper-case word, NUL-terminated */
    char value[WORD_MAX];  /* its output without the mark, NUL-terminated */
    char mark;
} Keyword;

static Keyword *keywords = NULL;
static size_t keyword_count = 0;

typedef struct {
    const char *text;  /* the token as output (points into the statement, a keyword's value or a literal) */
    Py_ssize_t len;
    char mark;         /* 0 for a token that is not a keyword */
} Token;

static int is_word(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The characters fast.py spaces out: each is a token of its own (NUL stands for a value). */
static int is_single(char c) { return c != '\0' ? strchr(",=()?.*<>!;-+/", c) != NULL : 1; }

static int compare_keys(const void *a, const void *b) {
    return strcmp(((const Keyword *)a)->key, ((const Keyword *)b)->key);
}

/* _ACCEPTED.fullmatch(text): each character taken only in the context where the fast path reads it. */
static int accepted(const char *t, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        char c = t[i];
        char next = i + 1 < n ? t[i + 1] : '\0';
        int after_word = i > 0 && is_word(t[i - 1]);
        int has_next = i + 1 < n;
        if (is_blank(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
            (c != '\0' && strchr("(),.;*+", c) != NULL)) {
            i++;
        } else if (c >= '0' && c <= '9') {
            if (!after_word) return 0;  /* a digit starting a token was no plain value: 0x1F, 1abc, t.5 */
            i++;
        } else if (c == '\0') {
            if (after_word) return 0;  /* a value glued to a word: E'..', N'..', q'..', _utf8'..' */
            i++;
        } else if (c == '?') {
            if (has_next && (next == '+' || (next >= '0' && next <= '9'))) return 0;  /* ?+ ?1 */
            i++;
        } else if (c == '%') {  /* only the %s placeholder, not glued to a word */
            if (after_word || next != 's' || (i + 2 < n && is_word(t[i + 2]))) return 0;
            i += 2;
        } else if (c == '!') {
            if (next != '=') return 0;
            i += 2;
        } else if (c == '=') {
            if (has_next && (next == '=' || next == '>')) return 0;
            i++;
        } else if (c == '-') {
            if (has_next && (next == '-' || next == '>')) return 0;
            i++;
        } else if (c == '/') {
            if (has_next && next == '*') return 0;
            i++;
        } else if (c == '<' || c == '>') {
            /* not << >> <>= (two mends would apply), nor "< >", "< =", "> =" (which the mends would join) */
            Py_ssize_t j = i + 1;
            if (has_next && next == c) return 0;
            if (c == '<' && next == '>' && i + 2 < n && t[i + 2] == '=') return 0;
            if (j < n && is_blank(t[j])) {
                while (j < n && is_blank(t[j])) j++;
                if (j < n && (t[j] == '=' || (c == '<' && t[j] == '>'))) return 0;
            }
            i++;
        } else {
            return 0;
        }
    }
    return 1;
}

/* The last character of a token as it stands in fast.py's marked text (its mark, if any). */
static char last_of(const Token *tok) { return tok->mark ? tok->mark : tok->text[tok->len - 1]; }

static int is_char(const Token *tok, char c) { return tok->mark == 0 && tok->len == 1 && tok->text[0] == c; }

/* The tokens of t: "str.split()" after spacing the single characters, keywords looked up in upper case.
 * Returns the count, or -1 when a refused word (TRUE, FALSE, CAST) is met. */
static Py_ssize_t tokenize(const char *t, Py_ssize_t n, Token *tokens) {
    Py_ssize_t count = 0, i = 0;
    while (i < n) {
        if (is_blank(t[i])) {
            i++;
            continue;
        }
        Token *tok = &tokens[count++];
        tok->text = t + i;
        tok->mark = 0;
        if (is_single(t[i])) {
            tok->len = 1;
            i++;
            continue;
        }
        Py_ssize_t start = i;
        while (i < n && !is_blank(t[i]) && !is_single(t[i])) i++;
        tok->len = i - start;
        if (tok->len >= WORD_MAX) continue;  /* no keyword is that long */
        Keyword probe;
        for (Py_ssize_t k = 0; k < tok->len; k++) {
            char c = t[start + k];
            probe.key[k] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
        }
        probe.key[tok->len] = '\0';
        const Keyword *found = keyword_count
            ? bsearch(&probe, keywords, keyword_count, sizeof(Keyword), compare_keys) : NULL;
        if (found != NULL) {
            if (found->mark == MARK_REFUSED) return -1;
            tok->text = found->value;
            tok->len = (Py_ssize_t)strlen(found->value);
            tok->mark = found->mark;
        }
    }
    return count;
}

/* The marked text's passes on the tokens: mends, sign drops, the name-before-value refusal, glue, tighten, the
 * trailing ";" trimmed, the marks out and NUL -> "?". Writes into out (room for 2 * n + 2) and returns the
 * length, or -1 to refuse. */
static Py_ssize_t compose(Token *tokens, Py_ssize_t count, char *out) {
    /* fast.py: ", ," ", )" "( ," in the result -> refused (an empty list item) */
    for (Py_ssize_t i = 0; i + 1 < count; i++) {
        if ((is_char(&tokens[i], ',') && (is_char(&tokens[i + 1], ',') || is_char(&tokens[i + 1], ')'))) ||
            (is_char(&tokens[i], '(') && is_char(&tokens[i + 1], ',')))
            return -1;
    }
    /* _MENDED: "< >" "! =" "< =" "> =" joined (the guard left no chain where the order of the replaces matters) */
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Token tok = tokens[i];
        if (i + 1 < count && tok.mark == 0 && tok.len == 1) {
            const Token *next = &tokens[i + 1];
            const char *mended = NULL;
            if (tok.text[0] == '<' && is_char(next, '>')) mended = "<>";
            else if (tok.text[0] == '<' && is_char(next, '=')) mended = "<=";
            else if (tok.text[0] == '>' && is_char(next, '=')) mended = ">=";
            else if (tok.text[0] == '!' && is_char(next, '=')) mended = "!=";
            if (mended != NULL) {
                tok.text = mended;
                tok.len = 2;
                i++;
            }
        }
        tokens[kept++] = tok;
    }
    count = kept;
    /* Signs: the leading one before a value, and _SIGN's (after [\x02\x04(,;=<>*\/+-]), decided on the tokens
     * as they were before any drop, as re.sub decides on its input. */
    kept = 0;
    char previous_last = '\0';
    for (Py_ssize_t i = 0; i < count; i++) {
        Token tok = tokens[i];
        int sign = is_char(&tok, '-') || is_char(&tok, '+');
        int before_value = i + 1 < count && tokens[i + 1].mark == 0 && tokens[i + 1].len == 1 &&
                           tokens[i + 1].text[0] == '\0';
        int dropped = sign && before_value &&
                      (i == 0 || (previous_last != '\0' && strchr("\x02\x04(,;=<>*/+-", previous_last) != NULL));
        previous_last = last_of(&tok);
        if (!dropped) tokens[kept++] = tok;
    }
    count = kept;
    /* _AFTER_NAME: a value right after a word (a typed literal, date '2024-01-01') -> refused */
    for (Py_ssize_t i = 1; i < count; i++) {
        if (tokens[i].mark == 0 && tokens[i].len == 1 && tokens[i].text[0] == '\0' && is_word(last_of(&tokens[i - 1])))
            return -1;
    }
    /* rstrip(";"): trailing ";" tokens go (tighten has taken the blanks before them) */
    while (count > 0 && is_char(&tokens[count - 1], ';')) count--;
    /* _GLUE and tighten(): no blank before , ) . ; nor after ( . ; "(" glued to a word or a function keyword */
    Py_ssize_t length = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const Token *tok = &tokens[i];
        if (i > 0) {
            const Token *prev = &tokens[i - 1];
            char first = tok->mark == 0 && tok->len == 1 ? tok->text[0] : ' ';
            int tight = first == ',' || first == ')' || first == '.' || first == ';' || is_char(prev, '(') ||
                        is_char(prev, '.') || (first == '(' && (is_word(last_of(prev)) || prev->mark == MARK_FUNCTION));
            if (!tight) out[length++] = ' ';
        }
        if (tok->mark == 0 && tok->len == 1 && tok->text[0] == '\0') {
            out[length++] = '?';
        } else {
            memcpy(out + length, tok->text, (size_t)tok->len);
            length += tok->len;
        }
    }
    return length;
}

static PyObject *fingerprint(PyObject *Py_UNUSED(module), PyObject *shape) {
    if (!PyTuple_Check(shape)) {
        PyErr_Format(PyExc_TypeError, "fingerprint() takes the shape tuple, not %.100s", Py_TYPE(shape)->tp_name);
        return NULL;
    }
    /* "\x00".join(shape[::2]): only ASCII texts are for this path (the guard refuses anything else) */
    Py_ssize_t items = PyTuple_GET_SIZE(shape), n = 0;
    for (Py_ssize_t i = 0; i < items; i += 2) {
        PyObject *text = PyTuple_GET_ITEM(shape, i);
        if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) Py_RETURN_NONE;
        n += PyUnicode_GET_LENGTH(text) + (i > 0);
    }
    /* the text (n), the output (at most 2n + 2: a blank between tokens) and the tokens (at most n + 1) */
    char *t = PyMem_Malloc((size_t)(3 * n + 2));
    Token *tokens = PyMem_Malloc(sizeof(Token) * (size_t)(n + 1));
    if (t == NULL || tokens == NULL) {
        PyMem_Free(t);
        PyMem_Free(tokens);
        return PyErr_NoMemory();
    }
    char *out = t + n;
    PyObject *result = NULL;
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < items; i += 2) {
        PyObject *text = PyTuple_GET_ITEM(shape, i);
        if (i > 0) t[at++] = '\0';
        memcpy(t + at, PyUnicode_1BYTE_DATA(text), (size_t)PyUnicode_GET_LENGTH(text));
        at += PyUnicode_GET_LENGTH(text);
    }
    if (accepted(t, n)) {
        Py_ssize_t count = tokenize(t, n, tokens);
        Py_ssize_t length = count < 0 ? -1 : compose(tokens, count, out);
        if (length >= 0) result = PyUnicode_DecodeASCII(out, length, NULL);
        else result = Py_NewRef(Py_None);
    } else {
        result = Py_NewRef(Py_None);
    }
    PyMem_Free(t);
    PyMem_Free(tokens);
    return result;
}

/* configure(tokens): the keyword table, from fast.py's _TOKENS (upper-case word -> output + class mark). */
static PyObject *configure(PyObject *Py_UNUSED(module), PyObject *table) {
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "configure() takes a dict of upper-case word -> output + class mark");
        return NULL;
    }
    Py_ssize_t size = PyDict_GET_SIZE(table), position = 0, i = 0;
    Keyword *fresh = PyMem_Calloc((size_t)(size ? size : 1), sizeof(Keyword));
    if (fresh == NULL) return PyErr_NoMemory();
    PyObject *key, *value;
    while (PyDict_Next(table, &position, &key, &value)) {
        Py_ssize_t key_len, value_len;
        const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8AndSize(key, &key_len) : NULL;
        const char *v = k != NULL && PyUnicode_Check(value) ? PyUnicode_AsUTF8AndSize(value, &value_len) : NULL;
        if (v == NULL || key_len < 1 || key_len >= WORD_MAX || value_len < 1 || value_len > WORD_MAX ||
            (Py_ssize_t)strlen(k) != key_len || (Py_ssize_t)strlen(v) != value_len) {
            PyMem_Free(fresh);
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "configure(): %R -> %R is no keyword of 1 to %d ASCII characters "
                             "with its class mark", key, value, WORD_MAX - 1);
            return NULL;
        }
        memcpy(fresh[i].key, k, (size_t)key_len);
        memcpy(fresh[i].value, v, (size_t)value_len - 1);
        fresh[i].mark = v[value_len - 1];
        i++;
    }
    qsort(fresh, (size_t)size, sizeof(Keyword), compare_keys);
    PyMem_Free(keywords);
    keywords = fresh;
    keyword_count = (size_t)size;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"fingerprint", fingerprint, METH_O,
     "fingerprint(shape) -> str | None: fast.py's fast_fingerprint before its IN/VALUES step, or None (refused)."},
    {"configure", configure, METH_O, "configure(tokens): the keyword table (fast.py's _TOKENS)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "pipeline._fastfp", .m_doc = NULL, .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__fastfp(void) { return PyModule_Create(&module); }
