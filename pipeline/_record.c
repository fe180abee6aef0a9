/* pipeline._record: the optional C recorder of Monitor.track_request (see pipeline/recorder.py).
 *
 * Why C: in pure Python a call to track_request costs ~200 ns before it does anything useful (a Python frame,
 * the tuple, the list extension), and turning each row's seven Python values into columns later costs ~240 ns
 * more, so the 150 ns budget cannot be met. Here the call stores the row straight into columns (C arrays), with
 * the time from clock_gettime, and drain() hands them to the compaction as bytes. The two strings (route,
 * method) are held as ids into a list of the distinct string objects met since the last drain (found by identity
 * in a small direct-mapped cache: a framework passes the same route object for every request of a route), so
 * the compaction encodes each distinct string once into the flush's dictionary (with the caps applied as for
 * every other row), then maps the ids with remap(), in C too.
 *
 * Only what is certainly storable is taken here: exact str route and method, exact int status (int16), a finite
 * non-negative float or int duration, None or an int64 request id, an int32 query count, and a timestamp (when
 * given) within the accepted range. Anything else goes to `fallback` (Monitor.track_request in Python) with the
 * same arguments, so rejections, their counts and their messages are exactly the pure-Python ones.
 *
 * Thread safety: every method holds the GIL from start to end and calls no Python code while it changes the
 * columns (the only Python calls, `fallback` and `on_full`, happen before any change, and the state is read
 * again after them), so concurrent recorders and drain() never see half a row.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* A missing request id while buffered (pipeline/tables.py NULL_VALUE["q"]). */
#define NULL_REQUEST_ID INT64_MIN
#define FIRST_CAPACITY 256
/* Slots of the identity cache of each string column: a miss only adds a duplicate entry to the column's list
 * of distinct objects (the compaction dedupes by value), so its size bounds memory, never correctness. */
#define CACHE_SLOTS 1024

typedef struct {
    PyObject *values;                 /* list of the string objects the ids point to (owns the references) */
    PyObject *slot_key[CACHE_SLOTS];  /* borrowed from values: alive until the next drain */
    uint32_t slot_id[CACHE_SLOTS];
} Strings;

typedef struct {
    PyObject_HEAD
    Py_ssize_t len;       /* rows held */
    Py_ssize_t capacity;  /* rows the arrays have room for */
    Py_ssize_t max_rows;  /* rows held at most: then on_full() compacts them */
    double *ts;
    uint32_t *route;      /* ids into routes.values */
    uint32_t *method;
    Strings routes;
    Strings methods;
    int16_t *status;
    double *duration_ms;
    int64_t *request_id;
    int32_t *query_count;
    PyObject *fallback;   /* called with the arguments of every call this recorder does not take */
    PyObject *on_full;    /* called with no argument when max_rows are held */
    clockid_t clock;
    double resolution_seconds;
    double max_age_seconds;
    double max_ahead_seconds;
} Recorder;

static PyObject *kw_names[7];  /* track_request's parameter names, interned */
static const char *const kw_strings[7] = {"route", "method", "status", "duration_ms", "request_id",
                                          "query_count", "ts"};

static double now_seconds(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int grow(Recorder *self) {
    Py_ssize_t cap = self->capacity ? self->capacity * 2 : FIRST_CAPACITY;
    if (cap > self->max_rows)
        cap = self->max_rows;
    /* Each realloc keeps the old block on failure, so a failed growth leaves the recorder as it was. */
#define GROW(field)                                                              \
    {                                                                            \
        void *p = PyMem_Realloc(self->field, (size_t)cap * sizeof(*self->field)); \
        if (p == NULL)                                                           \
            return -1;                                                           \
        self->field = p;                                                         \
    }
    GROW(ts) GROW(route) GROW(method) GROW(status) GROW(duration_ms) GROW(request_id) GROW(query_count)
#undef GROW
    self->capacity = cap;
    return 0;
}

/* The id of a string object in one column's list, added if this object is not in the cache; -1 on failure. */
static long long string_id(Strings *strings, PyObject *s) {
    size_t slot = ((uintptr_t)s >> 4) & (CACHE_SLOTS - 1);
    Py_ssize_t id;
    if (strings->slot_key[slot] == s)
        return strings->slot_id[slot];
    if (strings->values == NULL && (strings->values = PyList_New(0)) == NULL)
        return -1;
    id = PyList_GET_SIZE(strings->values);
    if (PyList_Append(strings->values, s) < 0)
        return -1;
    strings->slot_key[slot] = s;
    strings->slot_id[slot] = (uint32_t)id;
    return id;
}

/* A list of the strings, and the cache emptied (its keys were borrowed from that list). */
static PyObject *take_strings(Strings *strings) {
    PyObject *values = strings->values;
    strings->values = NULL;
    memset(strings->slot_key, 0, sizeof(strings->slot_key));
    return values != NULL ? values : PyList_New(0);
}

/* A finite, non-negative number as a double (exact float or int only); 0 if it is anything else. */
static int as_duration(PyObject *v, double *out) {
    double d;
    if (PyFloat_CheckExact(v))
        d = PyFloat_AS_DOUBLE(v);
    else if (PyLong_CheckExact(v)) {
        d = PyLong_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    } else
        return 0;
    if (!(d >= 0.0 && d < Py_HUGE_VAL))  /* also false for NaN */
        return 0;
    *out = d;
    return 1;
}

/* An exact int within [lo, hi]; 0 if it is anything else. */
static int as_int(PyObject *v, long long lo, long long hi, long long *out) {
    int overflow;
    long long x;
    if (!PyLong_CheckExact(v))
        return 0;
    x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || x < lo || x > hi)
        return 0;
    *out = x;
    return 1;
}

static PyObject *call_fallback(Recorder *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *track_request(Recorder *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *arg[7] = {NULL, NULL, NULL, NULL, Py_None, NULL, Py_None};
    Py_ssize_t i, j, nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    double duration_ms, ts;
    long long status, request_id = NULL_REQUEST_ID, query_count = 0;

    if (nargs > 7)
        goto slow;
    for (i = 0; i < nargs; i++)
        arg[i] = args[i];
    for (i = 0; i < nkw; i++) {  /* keywords: a name unknown or given twice is the Python path's TypeError */
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        for (j = 0; j < 7; j++)
            if (name == kw_names[j] || PyUnicode_Compare(name, kw_names[j]) == 0)
                break;
        if (j == 7 || j < nargs)
            goto slow;
        arg[j] = args[nargs + i];
    }
    if (arg[0] == NULL || arg[1] == NULL || arg[2] == NULL || arg[3] == NULL)
        goto slow;
    if (!PyUnicode_CheckExact(arg[0]) || !PyUnicode_CheckExact(arg[1]))
        goto slow;
    if (!as_int(arg[2], INT16_MIN, INT16_MAX, &status) || !as_duration(arg[3], &duration_ms))
        goto slow;
    if (arg[4] != Py_None && !as_int(arg[4], INT64_MIN, INT64_MAX, &request_id))
        goto slow;
    if (arg[5] != NULL && !as_int(arg[5], INT32_MIN, INT32_MAX, &query_count))
        goto slow;
    if (arg[6] == Py_None)
        ts = now_seconds(self->clock);
    else {  /* a timestamp of its own (the WSGI integration's): accepted within the range pipeline.validate sets */
        double now = now_seconds(self->clock);
        if (!PyFloat_CheckExact(arg[6]))
            goto slow;
        ts = PyFloat_AS_DOUBLE(arg[6]);
        if (!(now - self->max_age_seconds <= ts && ts <= now + self->max_ahead_seconds))
            goto slow;
    }
    if (self->len >= self->max_rows) {
        /* The flusher fell behind: compact on this thread (it may release the GIL: the state is read again). */
        PyObject *r = PyObject_CallNoArgs(self->on_full);
        if (r == NULL)
            PyErr_Clear();  /* the Python path then records the row (and reports what failed) */
        Py_XDECREF(r);
        if (self->len >= self->max_rows)
            goto slow;
    }
    if (self->len >= self->capacity && grow(self) < 0)
        goto slow;
    {
        /* A failed append (out of memory) leaves at most an unused entry in a list: the row goes the slow way. */
        long long route = string_id(&self->routes, arg[0]), method = string_id(&self->methods, arg[1]);
        if (route < 0 || method < 0) {
            PyErr_Clear();
            goto slow;
        }
        i = self->len;
        self->route[i] = (uint32_t)route;
        self->method[i] = (uint32_t)method;
    }
    self->ts[i] = ts;
    self->status[i] = (int16_t)status;
    self->duration_ms[i] = duration_ms;
    self->request_id[i] = (int64_t)request_id;
    self->query_count[i] = (int32_t)query_count;
    self->len = i + 1;
    Py_RETURN_NONE;
slow:
    return call_fallback(self, args, (size_t)nargs, kwnames);
}

static PyObject *drain(Recorder *self, PyObject *Py_UNUSED(ignored)) {
    Py_ssize_t n = self->len;
    PyObject *out;
    if (n == 0)
        Py_RETURN_NONE;
    /* "N" hands the lists over (on failure too): the recorder is empty afterwards either way. */
    out = Py_BuildValue("(ny#y#Ny#Ny#y#y#y#)", n, (const char *)self->ts, (Py_ssize_t)(n * sizeof(double)),
                        (const char *)self->route, (Py_ssize_t)(n * sizeof(uint32_t)), take_strings(&self->routes),
                        (const char *)self->method, (Py_ssize_t)(n * sizeof(uint32_t)),
                        take_strings(&self->methods), (const char *)self->status, (Py_ssize_t)(n * sizeof(int16_t)),
                        (const char *)self->duration_ms, (Py_ssize_t)(n * sizeof(double)),
                        (const char *)self->request_id, (Py_ssize_t)(n * sizeof(int64_t)),
                        (const char *)self->query_count, (Py_ssize_t)(n * sizeof(int32_t)));
    self->len = 0;
    return out;
}

static void drop_rows(Recorder *self) {
    self->len = 0;  /* first: a string's destructor could run Python code that records again */
    memset(self->routes.slot_key, 0, sizeof(self->routes.slot_key));
    memset(self->methods.slot_key, 0, sizeof(self->methods.slot_key));
    Py_CLEAR(self->routes.values);
    Py_CLEAR(self->methods.values);
}

static PyObject *clear(Recorder *self, PyObject *Py_UNUSED(ignored)) {
    drop_rows(self);
    Py_RETURN_NONE;
}

/* remap(ids, table): bytes of uint32 ids, each replaced by table[id] (the compaction's step from the recorder's
 * ids to the flush dictionary's, one C loop instead of a Python call per row). */
static PyObject *remap(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer ids, table;
    PyObject *out = NULL;
    Py_ssize_t i, n, size;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "remap(ids, table) takes 2 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &ids, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &table, PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&ids);
        return NULL;
    }
    if (table.itemsize != 4 || ids.len % 4 != 0) {
        PyErr_SetString(PyExc_ValueError, "remap: ids and table must hold 4-byte unsigned ints");
        goto done;
    }
    n = ids.len / 4;
    size = table.len / 4;
    out = PyBytes_FromStringAndSize(NULL, ids.len);
    if (out == NULL)
        goto done;
    {
        const uint32_t *src = ids.buf, *map = table.buf;
        uint32_t *dst = (uint32_t *)PyBytes_AS_STRING(out);
        for (i = 0; i < n; i++) {
            if (src[i] >= (uint32_t)size) {
                Py_CLEAR(out);
                PyErr_Format(PyExc_ValueError, "remap: id %u beyond the table's %zd entries", src[i], size);
                goto done;
            }
            dst[i] = map[src[i]];
        }
    }
done:
    PyBuffer_Release(&ids);
    PyBuffer_Release(&table);
    return out;
}

static Py_ssize_t recorder_len(Recorder *self) { return self->len; }

static int recorder_init(Recorder *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"fallback", "on_full", "max_rows", "resolution_seconds", "max_age_seconds",
                            "max_ahead_seconds", NULL};
    PyObject *fallback, *on_full;
    Py_ssize_t max_rows;
    double resolution, max_age, max_ahead;
    struct timespec res;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnddd", names, &fallback, &on_full, &max_rows, &resolution,
                                     &max_age, &max_ahead))
        return -1;
    if (max_rows < 1 || !PyCallable_Check(fallback) || !PyCallable_Check(on_full)) {
        PyErr_SetString(PyExc_ValueError, "Recorder needs callables fallback and on_full, and max_rows >= 1");
        return -1;
    }
    if (self->fallback != NULL) {
        PyErr_SetString(PyExc_TypeError, "a Recorder is initialised once");
        return -1;
    }
    Py_INCREF(fallback);
    self->fallback = fallback;
    Py_INCREF(on_full);
    self->on_full = on_full;
    self->max_rows = max_rows;
    self->max_age_seconds = max_age;
    self->max_ahead_seconds = max_ahead;
    /* The coarse clock (the time of the kernel's last tick, every ~4 ms, read in ~5 ns) when its time stays within
     * the resolution asked for (timestamp_resolution_seconds, 10 ms by default): a tick can come late, so it must
     * tick twice per resolution. The exact clock (~20 ns) otherwise, and for a resolution of 0 (exact). */
    self->clock = CLOCK_REALTIME;
#ifdef CLOCK_REALTIME_COARSE
    if (resolution > 0 && clock_getres(CLOCK_REALTIME_COARSE, &res) == 0 &&
        2 * ((double)res.tv_sec + (double)res.tv_nsec * 1e-9) <= resolution)
        self->clock = CLOCK_REALTIME_COARSE;
#endif
    if (clock_getres(self->clock, &res) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->resolution_seconds = (double)res.tv_sec + (double)res.tv_nsec * 1e-9;
    return 0;
}

static int recorder_traverse(Recorder *self, visitproc visit, void *arg) {
    Py_VISIT(self->fallback);  /* the fallback is a bound method of the Monitor, which holds this recorder */
    Py_VISIT(self->on_full);
    Py_VISIT(self->routes.values);
    Py_VISIT(self->methods.values);
    return 0;
}

static int recorder_clear(Recorder *self) {
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->on_full);
    return 0;
}

static void recorder_dealloc(Recorder *self) {
    PyObject_GC_UnTrack(self);
    recorder_clear(self);
    drop_rows(self);
    PyMem_Free(self->ts);
    PyMem_Free(self->route);
    PyMem_Free(self->method);
    PyMem_Free(self->status);
    PyMem_Free(self->duration_ms);
    PyMem_Free(self->request_id);
    PyMem_Free(self->query_count);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef module_methods[] = {
    {"remap", (PyCFunction)(void (*)(void))remap, METH_FASTCALL,
     "remap(ids, table) -> bytes: each uint32 id of ids replaced by table[id]."},
    {NULL, NULL, 0, NULL},
};

static PyObject *get_resolution(Recorder *self, void *Py_UNUSED(closure)) {
    return PyFloat_FromDouble(self->resolution_seconds);
}

static PyMethodDef recorder_methods[] = {
    {"track_request", (PyCFunction)(void (*)(void))track_request, METH_FASTCALL | METH_KEYWORDS,
     "Record one request (Monitor.track_request's signature); what is not certainly storable goes to fallback."},
    {"drain", (PyCFunction)drain, METH_NOARGS,
     "None, or (rows, ts, routes, methods, status, duration_ms, request_id, query_count) held, as bytes of the "
     "columns' C types (d, list, list, h, d, q, i); the recorder is then empty."},
    {"clear", (PyCFunction)clear, METH_NOARGS, "Drop every row held (a forked child's copy of its parent's)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef recorder_getset[] = {
    {"resolution_seconds", (getter)get_resolution, NULL, "The resolution of the clock rows are stamped with.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods recorder_as_sequence = {.sq_length = (lenfunc)recorder_len};

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "pipeline._record.Recorder",
    .tp_doc = "Requests' rows in C columns, until the compaction drains them (see pipeline/_record.c).",
    .tp_basicsize = sizeof(Recorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)recorder_init,
    .tp_dealloc = (destructor)recorder_dealloc,
    .tp_traverse = (traverseproc)recorder_traverse,
    .tp_clear = (inquiry)recorder_clear,
    .tp_methods = recorder_methods,
    .tp_getset = recorder_getset,
    .tp_as_sequence = &recorder_as_sequence,
};

static struct PyModuleDef record_module = {
    PyModuleDef_HEAD_INIT, .m_name = "pipeline._record",
    .m_doc = "The optional C recorder of Monitor.track_request (pipeline/_record.c says why).", .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__record(void) {
    PyObject *m;
    int i;
    for (i = 0; i < 7; i++) {
        kw_names[i] = PyUnicode_InternFromString(kw_strings[i]);
        if (kw_names[i] == NULL)
            return NULL;
    }
    if (PyType_Ready(&RecorderType) < 0)
        return NULL;
    m = PyModule_Create(&record_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RecorderType);
    if (PyModule_AddObject(m, "Recorder", (PyObject *)&RecorderType) < 0) {
        Py_DECREF(&RecorderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
