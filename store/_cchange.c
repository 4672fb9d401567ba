/* The two steps every received change takes, in C for the common case: decoding its envelope
 * (store/_change.py is the reference, and the only place that refuses anything) and folding
 * it into its object (store/_fold.py is the reference; see "The fold" below).
 *
 * Theory of operation. `decode(envelope)` reads the bytes of an envelope straight into a
 * `Change`, doing in one pass what the reference does with two DAG-CBOR decodes, a re-encode
 * of the envelope and a walk of the decoded lists: every change a node receives takes this
 * path, and the reference spends most of its time building and checking lists it then throws
 * away.
 *
 * It accepts only what the reference accepts, and builds exactly what the reference builds:
 *   - the envelope in its one encoding: [body bytes, 64-byte signature, null | 64-byte
 *     signature], shortest lengths;
 *   - a format-1 body whose ids, managers and paths are ones the reference has already checked
 *     (found in its memo dicts, which also give the shared copy the reference would use, or
 *     in this file's cache of what it found there);
 *   - ops `set` of a scalar leaf (text, integer within 64 bits, finite 8-byte float, bool,
 *     null; not negative zero), `new` of the root, `del` of a path;
 *   - integers, lengths and strings in DAG-CBOR's strict forms (shortest heads, definite
 *     lengths, valid UTF-8).
 * Anything else, malformed or merely unusual (a list leaf, a `share`, an id seen for the first
 * time), returns None: the caller then runs the reference, which accepts it or names the fault.
 * So this file never has to be right about an error, only about what it accepts; the
 * differential tests in tests/test_change_native.py hold it to the reference on generated,
 * truncated and corrupted envelopes.
 *
 * Every read is bounds-checked against the end of its buffer before it happens.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <structmember.h>

#include <limits.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Set by configure(): the reference's types, memos and limits. */
static PyObject *change_type, *op_type, *change_id_type, *hlc_type;
static PyObject *good_ids, *good_managers, *known_paths;
static PyObject *str_set, *str_new, *str_del;
static Py_ssize_t max_bytes, max_ops;
static uint64_t max_counter;

#define MAX_DEPTH 32 /* keys in a path (store/_path.py) */

/* Change's fields in the order of its declaration, which `decode` fills in (configure()
 * checks the names, and finds where each slot lives in the object). */
static const char *const FIELDS[] = {
    "origin", "seq", "prev", "kind", "name", "hlc", "author", "manager", "ops", "seen", "at",
    "body", "origin_sig", "author_sig", "envelope", "digest", "id", "sort_key",
};
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))
static Py_ssize_t offsets[N_FIELDS];

/* What the reference has checked, found by the bytes that encode it: ids, managers and whole
 * paths, which repeat endlessly, so most changes are read without building a string to look
 * one up. Direct-mapped and bounded (a newcomer replaces what shares its slot). Each value is
 * the reference's copy from its memo; a check depends only on the bytes, so an entry stays
 * right for good. */
#define CACHE_SLOTS 2048 /* a power of two; 2048 * 80 bytes, allocated on first use */
#define CACHE_KEY_MAX 62 /* most paths, every usual id */
typedef struct {
    uint64_t hash;
    PyObject *value;
    unsigned char space, len, key[CACHE_KEY_MAX];
} Slot;
static Slot *cache;

enum { SPACE_ID = 1, SPACE_MANAGER, SPACE_PATH };

static uint64_t fnv1a(unsigned char space, const unsigned char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL ^ space;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}

/* The cached value for these bytes, as a new reference, or NULL. */
static PyObject *cache_get(unsigned char space, const unsigned char *s, size_t n, uint64_t h) {
    if (n > CACHE_KEY_MAX) return NULL;
    Slot *e = &cache[h & (CACHE_SLOTS - 1)];
    if (e->value == NULL || e->hash != h || e->space != space || e->len != n ||
        memcmp(e->key, s, n) != 0)
        return NULL;
    return Py_NewRef(e->value);
}

static void cache_put(unsigned char space, const unsigned char *s, size_t n, uint64_t h,
                      PyObject *value) {
    if (n > CACHE_KEY_MAX) return;
    Slot *e = &cache[h & (CACHE_SLOTS - 1)];
    Py_XSETREF(e->value, Py_NewRef(value));
    e->hash = h;
    e->space = space;
    e->len = (unsigned char)n;
    memcpy(e->key, s, n);
}

static void cache_clear(void) {
    for (int i = 0; i < CACHE_SLOTS; i++) Py_CLEAR(cache[i].value);
}

/* `memo[key]` (the key's reference is stolen), cached under the bytes that encode it, as a
 * new reference; NULL when the reference has not checked it. */
static PyObject *remember(PyObject *memo, PyObject *key, unsigned char space,
                          const unsigned char *raw, size_t n, uint64_t h) {
    PyObject *good = PyDict_GetItemWithError(memo, key);
    Py_DECREF(key);
    if (good == NULL) {
        PyErr_Clear();
        return NULL;
    }
    cache_put(space, raw, n, h, good);
    return Py_NewRef(good);
}

typedef struct {
    const unsigned char *p, *end;
} Cur;

/* A CBOR head of major type 0..6 in its shortest form: 0 and the argument, or -1. */
static int head(Cur *c, int *major, uint64_t *arg) {
    if (c->p >= c->end) return -1;
    unsigned ib = *c->p++;
    unsigned ai = ib & 31;
    *major = (int)(ib >> 5);
    if (*major == 7) return -1;
    if (ai < 24) {
        *arg = ai;
        return 0;
    }
    int n;
    uint64_t least;
    switch (ai) {
        case 24: n = 1; least = 24; break;
        case 25: n = 2; least = 0x100; break;
        case 26: n = 4; least = 0x10000; break;
        case 27: n = 8; least = 0x100000000ULL; break;
        default: return -1; /* reserved, or an indefinite length */
    }
    if (c->end - c->p < n) return -1;
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | c->p[i];
    c->p += n;
    if (v < least) return -1;
    *arg = v;
    return 0;
}

static int expect(Cur *c, int major, uint64_t *arg) {
    int m;
    if (head(c, &m, arg) < 0 || m != major) return -1;
    return 0;
}

/* The next `n` bytes, or NULL. */
static const unsigned char *take(Cur *c, uint64_t n) {
    if ((uint64_t)(c->end - c->p) < n) return NULL;
    const unsigned char *at = c->p;
    c->p += n;
    return at;
}

/* A text string as a new str, or NULL (no exception set). */
static PyObject *text(Cur *c) {
    uint64_t n;
    const unsigned char *s;
    if (expect(c, 3, &n) < 0 || (s = take(c, n)) == NULL) return NULL;
    PyObject *out = PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)n, "strict");
    if (out == NULL) PyErr_Clear(); /* not UTF-8: the reference names the fault */
    return out;
}

/* The checked copy of a text string in `memo`, as a new reference, or NULL. */
static PyObject *memo_text(Cur *c, PyObject *memo, unsigned char space) {
    uint64_t n;
    const unsigned char *raw;
    if (expect(c, 3, &n) < 0 || (raw = take(c, n)) == NULL) return NULL;
    uint64_t h = fnv1a(space, raw, n);
    PyObject *hit = cache_get(space, raw, n, h);
    if (hit != NULL) return hit;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)raw, (Py_ssize_t)n, "strict");
    if (s == NULL) {
        PyErr_Clear();
        return NULL;
    }
    return remember(memo, s, space, raw, n, h);
}

/* `n` bytes exactly, as bytes, or NULL. */
static PyObject *byte_string(Cur *c, uint64_t n) {
    uint64_t got;
    const unsigned char *s;
    if (expect(c, 2, &got) < 0 || got != n || (s = take(c, n)) == NULL) return NULL;
    return PyBytes_FromStringAndSize((const char *)s, (Py_ssize_t)n);
}

static int unsigned_int(Cur *c, uint64_t *v) { return expect(c, 0, v); }

/* A path the reference has checked, as its shared tuple, or NULL. The root () is allowed
 * only with `allow_root`. */
static PyObject *path(Cur *c, int allow_root) {
    const unsigned char *start = c->p;
    uint64_t n, len;
    if (expect(c, 4, &n) < 0 || n > MAX_DEPTH) return NULL;
    if (n == 0) {
        if (!allow_root) return NULL;
        return PyTuple_New(0);
    }
    const unsigned char *segments = c->p;
    for (uint64_t i = 0; i < n; i++) {
        if (expect(c, 3, &len) < 0 || take(c, len) == NULL) return NULL;
    }
    size_t size = (size_t)(c->p - start); /* the path's whole encoding: one key per path */
    uint64_t h = fnv1a(SPACE_PATH, start, size);
    PyObject *hit = cache_get(SPACE_PATH, start, size, h);
    if (hit != NULL) return hit;

    Cur again = {segments, c->p};
    PyObject *key = PyTuple_New((Py_ssize_t)n);
    if (key == NULL) return NULL;
    for (uint64_t i = 0; i < n; i++) {
        PyObject *seg = text(&again);
        if (seg == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        PyTuple_SET_ITEM(key, (Py_ssize_t)i, seg);
    }
    return remember(known_paths, key, SPACE_PATH, start, size, h);
}

/* A scalar leaf: text, integer, finite 8-byte float, bool or null; NULL for anything else. */
static PyObject *scalar(Cur *c) {
    if (c->p >= c->end) return NULL;
    unsigned ib = *c->p;
    if (ib >> 5 == 7) {
        c->p++;
        switch (ib) {
            case 0xf4: Py_RETURN_FALSE;
            case 0xf5: Py_RETURN_TRUE;
            case 0xf6: Py_RETURN_NONE;
            case 0xfb: {
                const unsigned char *b = take(c, 8);
                if (b == NULL) return NULL;
                uint64_t bits = 0;
                for (int i = 0; i < 8; i++) bits = (bits << 8) | b[i];
                double d;
                memcpy(&d, &bits, sizeof d);
                /* DAG-CBOR forbids NaN, the infinities and negative zero */
                if (!isfinite(d) || bits == 0x8000000000000000ULL) return NULL;
                return PyFloat_FromDouble(d);
            }
            default: return NULL; /* shorter floats, other simple values */
        }
    }
    int major;
    uint64_t v;
    switch (ib >> 5) {
        case 0:
            if (head(c, &major, &v) < 0) return NULL;
            return PyLong_FromUnsignedLongLong(v);
        case 1:
            if (head(c, &major, &v) < 0 || v > (uint64_t)INT64_MAX) return NULL;
            return PyLong_FromLongLong(-1 - (long long)v);
        case 3: return text(c);
        default: return NULL; /* lists (checked by the reference), maps, tags, bytes */
    }
}

/* A NamedTuple of `n` items (stolen), built the way tuple.__new__ builds a subclass. */
static PyObject *named(PyObject *type, Py_ssize_t n, PyObject **items) {
    PyObject *t = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, n);
    if (t == NULL) {
        for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(t, i, items[i]);
    return t;
}

/* One op, or NULL. */
static PyObject *op(Cur *c) {
    uint64_t n, len;
    const unsigned char *name;
    if (expect(c, 4, &n) < 0 || (n != 2 && n != 3)) return NULL;
    if (expect(c, 3, &len) < 0 || len != 3 || (name = take(c, 3)) == NULL) return NULL;
    PyObject *items[3];
    if (n == 3 && memcmp(name, "set", 3) == 0) {
        if ((items[1] = path(c, 0)) == NULL) return NULL;
        if ((items[2] = scalar(c)) == NULL) {
            Py_DECREF(items[1]);
            return NULL;
        }
        items[0] = Py_NewRef(str_set);
    } else if (n == 2 && memcmp(name, "new", 3) == 0) {
        uint64_t root;
        if (expect(c, 4, &root) < 0 || root != 0) return NULL;
        items[0] = Py_NewRef(str_new);
        if ((items[1] = PyTuple_New(0)) == NULL) {
            Py_DECREF(items[0]);
            return NULL;
        }
        items[2] = Py_NewRef(Py_None);
    } else if (n == 2 && memcmp(name, "del", 3) == 0) {
        if ((items[1] = path(c, 1)) == NULL) return NULL;
        items[0] = Py_NewRef(str_del);
        items[2] = Py_NewRef(Py_None);
    } else {
        return NULL; /* share, own, or not an op: the reference decides */
    }
    return named(op_type, 3, items);
}

/* The body's fields, filled in by `body()`; all new references or NULL. */
typedef struct {
    PyObject *origin, *seq, *prev, *kind, *name, *wall, *counter, *author, *manager;
    PyObject *ops, *seen, *at;
    uint64_t seq_v;
} Body;

static void body_clear(Body *b) {
    Py_CLEAR(b->origin);
    Py_CLEAR(b->seq);
    Py_CLEAR(b->prev);
    Py_CLEAR(b->kind);
    Py_CLEAR(b->name);
    Py_CLEAR(b->wall);
    Py_CLEAR(b->counter);
    Py_CLEAR(b->author);
    Py_CLEAR(b->manager);
    Py_CLEAR(b->ops);
    Py_CLEAR(b->seen);
    Py_CLEAR(b->at);
}

/* Reads the body; 0 when it has the common shape, -1 otherwise (`b` then holds leftovers for
 * body_clear). -2 with an exception set on a failure that is not the input's (memory). */
static int body(Cur *c, Body *b, int has_asig) {
    uint64_t n, v, wall, counter;
    if (expect(c, 4, &n) < 0 || (n != 12 && n != 13)) return -1;
    if (unsigned_int(c, &v) < 0 || v != 1) return -1; /* format version */
    if ((b->origin = memo_text(c, good_ids, SPACE_ID)) == NULL) return -1;
    if (unsigned_int(c, &b->seq_v) < 0 || b->seq_v < 1) return -1;
    if ((b->seq = PyLong_FromUnsignedLongLong(b->seq_v)) == NULL) return -2;
    if ((b->prev = byte_string(c, 32)) == NULL) return -1;
    if ((b->kind = memo_text(c, good_ids, SPACE_ID)) == NULL) return -1;
    if ((b->name = memo_text(c, good_ids, SPACE_ID)) == NULL) return -1;
    if (unsigned_int(c, &wall) < 0 || wall > (uint64_t)INT64_MAX) return -1;
    if (unsigned_int(c, &counter) < 0 || counter > max_counter) return -1;
    if ((b->wall = PyLong_FromUnsignedLongLong(wall)) == NULL) return -2;
    if ((b->counter = PyLong_FromUnsignedLongLong(counter)) == NULL) return -2;
    if ((b->author = memo_text(c, good_ids, SPACE_ID)) == NULL) return -1;
    if ((b->manager = memo_text(c, good_managers, SPACE_MANAGER)) == NULL) return -1;

    uint64_t n_ops;
    if (expect(c, 4, &n_ops) < 0 || n_ops < 1 || n_ops > (uint64_t)max_ops) return -1;
    if ((b->ops = PyTuple_New((Py_ssize_t)n_ops)) == NULL) return -2;
    for (uint64_t i = 0; i < n_ops; i++) {
        PyObject *o = op(c);
        if (o == NULL) return PyErr_Occurred() ? -2 : -1;
        PyTuple_SET_ITEM(b->ops, (Py_ssize_t)i, o);
    }

    uint64_t n_seen;
    if (expect(c, 4, &n_seen) < 0 || n_seen > 4 * (uint64_t)max_ops) return -1;
    if ((b->seen = PyDict_New()) == NULL) return -2;
    for (uint64_t i = 0; i < n_seen; i++) {
        uint64_t three, seq;
        if (expect(c, 4, &three) < 0 || three != 3) return -1;
        PyObject *items[2];
        PyObject *p = path(c, 1);
        if (p == NULL) return PyErr_Occurred() ? -2 : -1;
        if ((items[0] = memo_text(c, good_ids, SPACE_ID)) == NULL) {
            Py_DECREF(p);
            return -1;
        }
        if (unsigned_int(c, &seq) < 0 || seq < 1) {
            Py_DECREF(p);
            Py_DECREF(items[0]);
            return -1;
        }
        if ((items[1] = PyLong_FromUnsignedLongLong(seq)) == NULL) {
            Py_DECREF(p);
            Py_DECREF(items[0]);
            return -2;
        }
        PyObject *writer = named(change_id_type, 2, items);
        if (writer == NULL) {
            Py_DECREF(p);
            return -2;
        }
        int rc = PyDict_SetItem(b->seen, p, writer); /* a path listed twice: the last wins */
        Py_DECREF(p);
        Py_DECREF(writer);
        if (rc < 0) return -2;
    }

    int by_origin = b->author == b->origin || PyUnicode_Compare(b->author, b->origin) == 0;
    if (n == 13) {
        uint64_t at;
        if (by_origin || !has_asig || unsigned_int(c, &at) < 0) return -1;
        if ((b->at = PyLong_FromUnsignedLongLong(at)) == NULL) return -2;
    } else {
        if (!by_origin || has_asig) return -1;
        b->at = Py_NewRef(Py_None);
    }
    return c->p == c->end ? 0 : -1;
}

/* decode(envelope: bytes) -> Change | None */
static PyObject *decode(PyObject *self, PyObject *envelope) {
    (void)self;
    if (change_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "store._cchange.configure() was not called");
        return NULL;
    }
    if (!PyBytes_CheckExact(envelope) || PyBytes_GET_SIZE(envelope) > max_bytes) Py_RETURN_NONE;
    const unsigned char *start = (const unsigned char *)PyBytes_AS_STRING(envelope);
    Cur c = {start, start + PyBytes_GET_SIZE(envelope)};

    uint64_t len, body_len;
    const unsigned char *raw_body, *raw_sig, *raw_asig = NULL;
    if (c.p >= c.end || *c.p++ != 0x83) Py_RETURN_NONE;
    if (expect(&c, 2, &body_len) < 0 || (raw_body = take(&c, body_len)) == NULL) Py_RETURN_NONE;
    if (expect(&c, 2, &len) < 0 || len != 64 || (raw_sig = take(&c, 64)) == NULL) Py_RETURN_NONE;
    if (c.p < c.end && *c.p == 0xf6) {
        c.p++;
    } else if (expect(&c, 2, &len) < 0 || len != 64 || (raw_asig = take(&c, 64)) == NULL) {
        Py_RETURN_NONE;
    }
    if (c.p != c.end) Py_RETURN_NONE;

    Body b = {0};
    Cur bc = {raw_body, raw_body + body_len};
    int rc = body(&bc, &b, raw_asig != NULL);
    if (rc < 0) {
        body_clear(&b);
        if (rc == -2) return NULL;
        Py_RETURN_NONE;
    }

    PyObject *result = NULL;
    PyObject *hlc = NULL, *id = NULL, *sort_key = NULL, *body_bytes = NULL, *sig = NULL;
    PyObject *asig = NULL, *digest = NULL;
    PyObject *items[2];

    items[0] = Py_NewRef(b.wall);
    items[1] = Py_NewRef(b.counter);
    if ((hlc = named(hlc_type, 2, items)) == NULL) goto done;
    items[0] = Py_NewRef(b.origin);
    items[1] = Py_NewRef(b.seq);
    if ((id = named(change_id_type, 2, items)) == NULL) goto done;
    if ((sort_key = PyTuple_Pack(4, b.wall, b.counter, b.origin, b.seq)) == NULL) goto done;
    body_bytes = PyBytes_FromStringAndSize((const char *)raw_body, (Py_ssize_t)body_len);
    if (body_bytes == NULL) goto done;
    if ((sig = PyBytes_FromStringAndSize((const char *)raw_sig, 64)) == NULL) goto done;
    if (raw_asig == NULL)
        asig = Py_NewRef(Py_None);
    else if ((asig = PyBytes_FromStringAndSize((const char *)raw_asig, 64)) == NULL)
        goto done;
    if ((digest = PyBytes_FromStringAndSize(NULL, SHA256_DIGEST_LENGTH)) == NULL) goto done;
    SHA256(start, (size_t)PyBytes_GET_SIZE(envelope), (unsigned char *)PyBytes_AS_STRING(digest));

    /* What Change(...) would do: fill in its slots (no __init__ of its own beyond that). */
    PyObject *values[N_FIELDS] = {
        b.origin, b.seq, b.prev, b.kind, b.name, hlc,      b.author, b.manager, b.ops,
        b.seen,   b.at,  body_bytes, sig, asig, envelope, digest, id,        sort_key,
    };
    result = ((PyTypeObject *)change_type)->tp_alloc((PyTypeObject *)change_type, 0);
    if (result == NULL) goto done;
    for (int i = 0; i < N_FIELDS; i++)
        *(PyObject **)((char *)result + offsets[i]) = Py_NewRef(values[i]);

done:
    body_clear(&b);
    Py_XDECREF(hlc);
    Py_XDECREF(id);
    Py_XDECREF(sort_key);
    Py_XDECREF(body_bytes);
    Py_XDECREF(sig);
    Py_XDECREF(asig);
    Py_XDECREF(digest);
    return result;
}

static int keep(PyObject **slot, PyObject *value) {
    Py_XSETREF(*slot, Py_NewRef(value));
    return 0;
}

/* Where each of `names`, the type's slots in declaration order, lives in its objects. */
static int slot_offsets(PyObject *type, const char *const *names, int n, Py_ssize_t *out) {
    PyTypeObject *t = (PyTypeObject *)type;
    PyObject *slots = PyObject_GetAttrString(type, "__slots__");
    if (slots == NULL) return -1;
    int same_slots = PyTuple_Check(slots) && PyTuple_GET_SIZE(slots) == n;
    for (int i = 0; same_slots && i < n; i++)
        same_slots = PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(slots, i), names[i]) == 0;
    Py_DECREF(slots);
    if (!same_slots || t->tp_itemsize != 0) {
        PyErr_Format(PyExc_TypeError, "%R does not have the slots this module fills in", type);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        PyObject *d = PyDict_GetItemString(t->tp_dict, names[i]);
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "%R.%s is not a plain slot", type, names[i]);
            return -1;
        }
        out[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    return 0;
}

/* configure(change, op, change_id, hlc, good_ids, good_managers, known_paths, max_bytes,
 *           max_ops, max_counter): the reference's types, memos and limits. */
static PyObject *configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *types[4], *memos[3];
    Py_ssize_t mb, mo;
    unsigned long long mc;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!O!nnK:configure", &PyType_Type, &types[0],
                          &PyType_Type, &types[1], &PyType_Type, &types[2], &PyType_Type,
                          &types[3], &PyDict_Type, &memos[0], &PyDict_Type, &memos[1],
                          &PyDict_Type, &memos[2], &mb, &mo, &mc))
        return NULL;
    for (int i = 1; i < 4; i++) {
        if (!PyType_IsSubtype((PyTypeObject *)types[i], &PyTuple_Type)) {
            PyErr_Format(PyExc_TypeError, "%R is not a tuple type", types[i]);
            return NULL;
        }
    }
    if (slot_offsets(types[0], FIELDS, N_FIELDS, offsets) < 0) return NULL;
    if (cache == NULL) {
        if ((cache = calloc(CACHE_SLOTS, sizeof *cache)) == NULL) return PyErr_NoMemory();
    } else {
        cache_clear();
    }
    keep(&change_type, types[0]);
    keep(&op_type, types[1]);
    keep(&change_id_type, types[2]);
    keep(&hlc_type, types[3]);
    keep(&good_ids, memos[0]);
    keep(&good_managers, memos[1]);
    keep(&known_paths, memos[2]);
    max_bytes = mb;
    max_ops = mo;
    max_counter = mc;
    Py_RETURN_NONE;
}


/* ---- The fold: a change applied to an object's state -----------------------------------
 *
 * `fold(state, changes, start, owners, hprefix, history)` applies changes[start:] to `state`
 * in place as store/_fold.py's `apply_change` does (the reference), for the common case: no
 * field of the object transferred or shared, every op a `set` or `new` its manager owns by
 * the kind's rules (owners already in the rules' memo, `owners`; a templated owner such as
 * ``node:{assignment.node}`` is filled in from the object's fields). For each change it
 * appends to `history` what the store writes: (history key, packed HistoryEntry). It stops at
 * the first change it does not take, before touching anything of it, and returns its index:
 * the caller applies that one with the reference and calls again for the rest. */

static const char *const STATE_FIELDS[] = {
    "kind", "name", "exists", "fields", "writers", "transfers", "shares", "revision",
    "last_key", "order", "rows", "slot", "dirty",
};
enum { S_NAME = 1, S_EXISTS, S_FIELDS, S_WRITERS, S_TRANSFERS, S_SHARES, S_REVISION, S_LAST };
#define N_STATE ((int)(sizeof STATE_FIELDS / sizeof STATE_FIELDS[0]))
#define S_DIRTY 12
static Py_ssize_t state_offsets[N_STATE];
static PyObject *state_type, *compile_fn, *templates;

/* Change's slots the fold reads (indices in FIELDS). */
enum { C_ORIGIN = 0, C_SEQ = 1, C_HLC = 5, C_AUTHOR = 6, C_MANAGER = 7, C_OPS = 8, C_SEEN = 9 };
enum { C_ID = 16, C_SORT_KEY = 17 };

#define SLOT_OF(obj, offsets, i) (*(PyObject **)((char *)(obj) + (offsets)[i]))
#define CHANGE_SLOT(obj, i) SLOT_OF(obj, offsets, i)
#define STATE_SLOT(obj, i) SLOT_OF(obj, state_offsets, i)

/* Replaces a slot's value (a new reference is stolen). */
static void set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value) {
    PyObject **slot = (PyObject **)((char *)obj + offset);
    Py_XSETREF(*slot, value);
}

/* msgpack, as msgpack-python's Packer writes these types: shortest headers. */
typedef struct {
    unsigned char *data;
    size_t len, cap;
    unsigned char inline_[512];
} Buf;

static int grow(Buf *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap * 2;
    while (cap < b->len + more) cap *= 2;
    unsigned char *data = b->data == b->inline_ ? PyMem_Malloc(cap) : PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (b->data == b->inline_) memcpy(data, b->inline_, b->len);
    b->data = data;
    b->cap = cap;
    return 0;
}

static void buf_free(Buf *b) {
    if (b->data != b->inline_) PyMem_Free(b->data);
}

static int put_bytes(Buf *b, const void *s, size_t n) {
    if (grow(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

static int put_be(Buf *b, unsigned char tag, uint64_t v, int n) {
    unsigned char out[9];
    int at = 0;
    if (tag) out[at++] = tag;
    for (int i = n - 1; i >= 0; i--) out[at++] = (unsigned char)(v >> (8 * i));
    return put_bytes(b, out, (size_t)at);
}

static int pack_uint(Buf *b, uint64_t v) {
    if (v < 0x80) return put_be(b, 0, v, 1);
    if (v < 0x100) return put_be(b, 0xcc, v, 1);
    if (v < 0x10000) return put_be(b, 0xcd, v, 2);
    if (v < 0x100000000ULL) return put_be(b, 0xce, v, 4);
    return put_be(b, 0xcf, v, 8);
}

static int pack_str_head(Buf *b, size_t n) {
    if (n < 32) return put_be(b, 0, 0xa0 | n, 1);
    if (n < 0x100) return put_be(b, 0xd9, n, 1);
    if (n < 0x10000) return put_be(b, 0xda, n, 2);
    return put_be(b, 0xdb, n, 4);
}

static int pack_array(Buf *b, size_t n) {
    if (n < 16) return put_be(b, 0, 0x90 | n, 1);
    if (n < 0x10000) return put_be(b, 0xdc, n, 2);
    return put_be(b, 0xdd, n, 4);
}

static int pack_str(Buf *b, PyObject *s) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL || pack_str_head(b, (size_t)n) < 0) return -1;
    return put_bytes(b, u, (size_t)n);
}

/* A path as its stored key: keys joined by NUL (store/_fold.py `_joined`), as a msgpack str. */
static int pack_path(Buf *b, PyObject *path) {
    Py_ssize_t n = PyTuple_GET_SIZE(path), size = n > 0 ? n - 1 : 0, len;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(path, i), &len) == NULL) return -1;
        size += len;
    }
    if (pack_str_head(b, (size_t)size) < 0) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *u = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(path, i), &len);
        if ((i > 0 && put_bytes(b, "", 1) < 0) || put_bytes(b, u, (size_t)len) < 0) return -1;
    }
    return 0;
}

/* An int slot of a tuple as uint64, or -1 (exception set). */
static int as_u64(PyObject *v, uint64_t *out) {
    *out = PyLong_AsUnsignedLongLong(v);
    return *out == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
}

/* Whether two objects are the same str (two str compare without failing). */
static int same(PyObject *a, PyObject *b) {
    return a == b || (PyUnicode_Check(a) && PyUnicode_Check(b) && PyUnicode_Compare(a, b) == 0);
}

/* Whether a templated owner of the common shape, ``literal{field.path}`` such as
 * ``node:{assignment.node}``, names `manager` given the object's fields: 1 yes, 0 (left to the
 * reference: other shapes, or not this manager), -1 error. The shape comes from the
 * reference's own parse (store/_ownership.py `_compiled`), asked once per owner. */
static int owned_by_template(PyObject *owner, PyObject *fields, PyObject *manager) {
    PyObject *shape = PyDict_GetItemWithError(templates, owner);
    if (shape == NULL) {
        if (PyErr_Occurred()) return -1;
        PyObject *parts = PyObject_CallOneArg(compile_fn, owner);
        if (parts == NULL) return -1;
        shape = Py_None;
        if (PyTuple_Check(parts) && PyTuple_GET_SIZE(parts) == 1) {
            PyObject *part = PyTuple_GET_ITEM(parts, 0);
            if (PyTuple_Check(part) && PyTuple_GET_SIZE(part) == 2 &&
                PyUnicode_CheckExact(PyTuple_GET_ITEM(part, 0)) &&
                PyTuple_CheckExact(PyTuple_GET_ITEM(part, 1))) {
                PyObject *ref = PyTuple_GET_ITEM(part, 1);
                PyObject *first = PyTuple_GET_SIZE(ref) == 1 ? PyTuple_GET_ITEM(ref, 0) : NULL;
                int by_name = first != NULL && PyUnicode_Check(first) &&
                              PyUnicode_CompareWithASCIIString(first, "name") == 0;
                if (!by_name) shape = part;
            }
        }
        if (PyDict_GET_SIZE(templates) > 1024) PyDict_Clear(templates);
        int rc = PyDict_SetItem(templates, owner, shape);
        Py_DECREF(parts); /* `shape`, if a part, is held by `templates` now */
        if (rc < 0) return -1;
        shape = PyDict_GetItemWithError(templates, owner);
        if (shape == NULL) return PyErr_Occurred() ? -1 : 0;
    }
    if (shape == Py_None) return 0;
    PyObject *value = PyDict_GetItemWithError(fields, PyTuple_GET_ITEM(shape, 1));
    if (value == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyUnicode_CheckExact(value) || PyUnicode_GET_LENGTH(value) == 0) return 0;
    PyObject *resolved = PyUnicode_Concat(PyTuple_GET_ITEM(shape, 0), value);
    if (resolved == NULL) return -1;
    int ok = same(resolved, manager);
    Py_DECREF(resolved);
    return ok;
}

/* Whether the reference would find `change` plainly allowed (store/_fold.py
 * `_plainly_allowed`): 1, 0, or -1 on an error. */
static int plainly_allowed(PyObject *state, PyObject *ops, PyObject *manager, PyObject *owners) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ops); i++) {
        PyObject *op = PyTuple_GET_ITEM(ops, i);
        PyObject *name = PyTuple_GET_ITEM(op, 0);
        if (name != str_set && name != str_new && !same(name, str_set) && !same(name, str_new))
            return 0;
        PyObject *owner = PyDict_GetItemWithError(owners, PyTuple_GET_ITEM(op, 1));
        if (owner == NULL) return PyErr_Occurred() ? -1 : 0; /* not in the memo yet */
        if (!PyUnicode_Check(owner) || !PyUnicode_Check(manager)) return 0;
        if (same(owner, manager)) continue;
        if (PyUnicode_FindChar(owner, '{', 0, PyUnicode_GET_LENGTH(owner), 1) < 0) return 0;
        int ok = owned_by_template(owner, STATE_SLOT(state, S_FIELDS), manager);
        if (ok <= 0) return ok;
    }
    return 1;
}

/* Marks `path` written by `me`, recording a conflict when its writer was neither `me` nor
 * what the change saw (store/_fold.py `apply_change`). */
static int overwrite(PyObject *path, PyObject *me, PyObject *seen, PyObject *writers,
                     PyObject *conflicts) {
    PyObject *prev = PyDict_GetItemWithError(writers, path);
    if (prev == NULL && PyErr_Occurred()) return -1;
    if (prev != NULL) {
        int differs = PyObject_RichCompareBool(prev, me, Py_NE);
        if (differs < 0) return -1;
        if (differs) {
            PyObject *saw = PyDict_GetItemWithError(seen, path);
            if (saw == NULL && PyErr_Occurred()) return -1;
            int unseen = saw == NULL ? 1 : PyObject_RichCompareBool(prev, saw, Py_NE);
            if (unseen < 0) return -1;
            if (unseen && PyDict_SetDefault(conflicts, path, prev) == NULL) return -1;
        }
    }
    return PyDict_SetItem(writers, path, me);
}

/* 1: folded; 0: left to the reference (nothing touched); -1: error. */
static int fold_one(PyObject *state, PyObject *c, PyObject *owners, PyObject *hprefix,
                    PyObject *history) {
    PyObject *ops = CHANGE_SLOT(c, C_OPS), *seen = CHANGE_SLOT(c, C_SEEN);
    PyObject *manager = CHANGE_SLOT(c, C_MANAGER), *key = CHANGE_SLOT(c, C_SORT_KEY);
    PyObject *hlc = CHANGE_SLOT(c, C_HLC), *me = CHANGE_SLOT(c, C_ID);
    PyObject *fields = STATE_SLOT(state, S_FIELDS), *writers = STATE_SLOT(state, S_WRITERS);
    PyObject *dirty = STATE_SLOT(state, S_DIRTY), *last = STATE_SLOT(state, S_LAST);
    PyObject *transfers = STATE_SLOT(state, S_TRANSFERS), *shares = STATE_SLOT(state, S_SHARES);
    if (!PyTuple_CheckExact(ops) || PyTuple_GET_SIZE(ops) < 1 || !PyDict_CheckExact(seen) ||
        !PyDict_CheckExact(fields) || !PyDict_CheckExact(writers) || !PyList_CheckExact(dirty) ||
        !PyDict_CheckExact(transfers) || !PyDict_CheckExact(shares) ||
        !PyLong_CheckExact(STATE_SLOT(state, S_REVISION)))
        return 0;
    if (PyDict_GET_SIZE(transfers) || PyDict_GET_SIZE(shares)) return 0; /* the reference's */
    if (last != Py_None) {
        int before = PyObject_RichCompareBool(key, last, Py_LE);
        if (before != 0) return before < 0 ? -1 : 0; /* out of fold order: the reference raises */
    }
    Py_ssize_t n_ops = PyTuple_GET_SIZE(ops);
    for (Py_ssize_t i = 0; i < n_ops; i++) {
        PyObject *op = PyTuple_GET_ITEM(ops, i);
        if (!PyTuple_Check(op) || PyTuple_GET_SIZE(op) != 3 ||
            !PyTuple_CheckExact(PyTuple_GET_ITEM(op, 1)))
            return 0;
    }
    if (!PyTuple_Check(hlc) || PyTuple_GET_SIZE(hlc) != 2) return 0;
    uint64_t seq, wall, counter;
    if (as_u64(CHANGE_SLOT(c, C_SEQ), &seq) < 0 || as_u64(PyTuple_GET_ITEM(hlc, 0), &wall) < 0 ||
        as_u64(PyTuple_GET_ITEM(hlc, 1), &counter) < 0 || counter > 0xffffffffULL) {
        PyErr_Clear();
        return 0;
    }
    long long revision_v = PyLong_AsLongLong(STATE_SLOT(state, S_REVISION));
    if (revision_v < 0 || revision_v == LLONG_MAX) {
        PyErr_Clear();
        return 0;
    }
    int allowed = plainly_allowed(state, ops, manager, owners);
    if (allowed <= 0) return allowed;

    /* From here on the change is applied: errors are the machine's (memory), not the input's. */
    int rc = -1;
    long flags = 0;
    PyObject *touched = NULL, *conflicts = NULL, *record = NULL, *hkey = NULL, *pair = NULL;
    Buf b = {0};
    b.data = b.inline_;
    b.cap = sizeof b.inline_;

    PyObject *revision = PyLong_FromLongLong(revision_v + 1);
    if (revision == NULL) goto done;
    set_slot(state, state_offsets[S_REVISION], revision);
    set_slot(state, state_offsets[S_LAST], Py_NewRef(key));
    if ((touched = PyDict_New()) == NULL || (conflicts = PyDict_New()) == NULL) goto done;
    for (Py_ssize_t i = 0; i < n_ops; i++) {
        PyObject *op = PyTuple_GET_ITEM(ops, i);
        PyObject *name = PyTuple_GET_ITEM(op, 0), *path = PyTuple_GET_ITEM(op, 1);
        if (PyDict_SetDefault(touched, path, Py_None) == NULL) goto done;
        if (same(name, str_set)) {
            if (overwrite(path, me, seen, writers, conflicts) < 0) goto done;
            if (PyDict_SetItem(fields, path, PyTuple_GET_ITEM(op, 2)) < 0) goto done;
        } else { /* new: the object exists, written at its root */
            set_slot(state, state_offsets[S_EXISTS], Py_NewRef(Py_True));
            flags |= 1; /* CREATED */
            path = PyTuple_GET_ITEM(op, 1); /* () */
            if (overwrite(path, me, seen, writers, conflicts) < 0) goto done;
            if (PyDict_DelItem(fields, path) < 0) {
                if (!PyErr_ExceptionMatches(PyExc_KeyError)) goto done;
                PyErr_Clear();
            }
        }
        if (PyList_Append(dirty, path) < 0) goto done;
    }

    /* [origin, seq, wall, counter, author, manager, [path key], conflicts, [], flags] */
    if (pack_array(&b, 10) < 0 || pack_str(&b, CHANGE_SLOT(c, C_ORIGIN)) < 0 ||
        pack_uint(&b, seq) < 0 || pack_uint(&b, wall) < 0 || pack_uint(&b, counter) < 0 ||
        pack_str(&b, CHANGE_SLOT(c, C_AUTHOR)) < 0 || pack_str(&b, manager) < 0 ||
        pack_array(&b, (size_t)PyDict_GET_SIZE(touched)) < 0)
        goto done;
    Py_ssize_t pos = 0;
    PyObject *path, *writer;
    while (PyDict_Next(touched, &pos, &path, &writer))
        if (pack_path(&b, path) < 0) goto done;
    if (pack_array(&b, (size_t)PyDict_GET_SIZE(conflicts)) < 0) goto done;
    pos = 0;
    while (PyDict_Next(conflicts, &pos, &path, &writer)) {
        uint64_t wseq;
        if (!PyTuple_Check(writer) || PyTuple_GET_SIZE(writer) != 2) {
            PyErr_SetString(PyExc_TypeError, "a writer is a ChangeId");
            goto done;
        }
        if (pack_array(&b, 3) < 0 || pack_path(&b, path) < 0 ||
            pack_str(&b, PyTuple_GET_ITEM(writer, 0)) < 0 ||
            as_u64(PyTuple_GET_ITEM(writer, 1), &wseq) < 0 || pack_uint(&b, wseq) < 0)
            goto done;
    }
    if (pack_array(&b, 0) < 0 || pack_uint(&b, (uint64_t)flags) < 0) goto done;
    if ((record = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len)) == NULL)
        goto done;

    /* hprefix, wall (8 bytes BE), counter (4), origin, NUL, seq (8): store/_keyspace.py */
    b.len = 0;
    Py_ssize_t origin_len;
    const char *origin = PyUnicode_AsUTF8AndSize(CHANGE_SLOT(c, C_ORIGIN), &origin_len);
    size_t prefix_len = (size_t)PyBytes_GET_SIZE(hprefix);
    if (origin == NULL || put_bytes(&b, PyBytes_AS_STRING(hprefix), prefix_len) < 0 ||
        put_be(&b, 0, wall, 8) < 0 || put_be(&b, 0, counter, 4) < 0 ||
        put_bytes(&b, origin, (size_t)origin_len) < 0 || put_bytes(&b, "", 1) < 0 ||
        put_be(&b, 0, seq, 8) < 0)
        goto done;
    if ((hkey = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len)) == NULL)
        goto done;
    if ((pair = PyTuple_Pack(2, hkey, record)) == NULL || PyList_Append(history, pair) < 0)
        goto done;
    rc = 1;
done:
    buf_free(&b);
    Py_XDECREF(touched);
    Py_XDECREF(conflicts);
    Py_XDECREF(record);
    Py_XDECREF(hkey);
    Py_XDECREF(pair);
    return rc;
}

/* fold(state, changes, start, owners, hprefix, history) -> index of the first change left */
static PyObject *fold(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (state_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "store._cchange.configure_fold() was not called");
        return NULL;
    }
    if (nargs != 6 || !Py_IS_TYPE(args[0], (PyTypeObject *)state_type) ||
        !PyList_CheckExact(args[1]) || !PyLong_Check(args[2]) || !PyDict_CheckExact(args[3]) ||
        !PyBytes_CheckExact(args[4]) || !PyList_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError,
                        "fold(state: ObjectState, changes: list, start: int, owners: dict, "
                        "hprefix: bytes, history: list)");
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[2]);
    if (i < 0) return PyErr_Occurred() ? NULL : PyLong_FromSsize_t(i);
    for (; i < PyList_GET_SIZE(args[1]); i++) {
        PyObject *c = PyList_GET_ITEM(args[1], i);
        if (!Py_IS_TYPE(c, (PyTypeObject *)change_type)) break;
        Py_INCREF(c);
        int rc = fold_one(args[0], c, args[3], args[4], args[5]);
        Py_DECREF(c);
        if (rc < 0) return NULL;
        if (rc == 0) break;
    }
    return PyLong_FromSsize_t(i);
}

/* configure_fold(object_state, compile): ObjectState, and store/_ownership.py `_compiled` */
static PyObject *configure_fold(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *type, *compile;
    if (!PyArg_ParseTuple(args, "O!O:configure_fold", &PyType_Type, &type, &compile)) return NULL;
    if (slot_offsets(type, STATE_FIELDS, N_STATE, state_offsets) < 0) return NULL;
    PyObject *fresh = PyDict_New();
    if (fresh == NULL) return NULL;
    Py_XSETREF(templates, fresh);
    keep(&state_type, type);
    keep(&compile_fn, compile);
    Py_RETURN_NONE;
}

/* ---- An object's state encoded (store/_fold.py `ObjectState.encode` is the reference) ----
 *
 * `encode_state(state)` does what `ObjectState.encode` does when no new path was written
 * since the last encode (the rows keep their order) and nothing is transferred or shared:
 * it packs again the rows of the paths written since (`dirty`), stores them in `rows`, clears
 * `dirty`, and returns the whole record. Otherwise, or for a value it does not pack (a tuple,
 * an int subclass, an integer msgpack cannot hold), it returns None before changing anything,
 * and the reference encodes. */

enum { S_KIND = 0, S_ORDER = 9, S_ROWS = 10, S_SLOT = 11 };

static int pack_leaf(Buf *b, PyObject *v, int depth) {
    if (v == Py_None) return put_be(b, 0, 0xc0, 1);
    if (v == Py_True) return put_be(b, 0, 0xc3, 1);
    if (v == Py_False) return put_be(b, 0, 0xc2, 1);
    if (PyUnicode_CheckExact(v)) return pack_str(b, v);
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow > 0) {
            uint64_t u = PyLong_AsUnsignedLongLong(v);
            if (u == (uint64_t)-1 && PyErr_Occurred()) {
                PyErr_Clear();
                return 1; /* beyond 64 bits: the reference's to refuse */
            }
            return pack_uint(b, u);
        }
        if (overflow < 0) return 1;
        if (n == -1 && PyErr_Occurred()) return -1;
        if (n >= 0) return pack_uint(b, (uint64_t)n);
        if (n >= -32) return put_be(b, 0, (uint64_t)n & 0xff, 1);
        if (n >= -128) return put_be(b, 0xd0, (uint64_t)n, 1);
        if (n >= -32768) return put_be(b, 0xd1, (uint64_t)n, 2);
        if (n >= -2147483648LL) return put_be(b, 0xd2, (uint64_t)n, 4);
        return put_be(b, 0xd3, (uint64_t)n, 8);
    }
    if (PyFloat_CheckExact(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return put_be(b, 0xcb, bits, 8);
    }
    if (PyList_CheckExact(v) && depth < MAX_DEPTH) {
        Py_ssize_t n = PyList_GET_SIZE(v);
        if (pack_array(b, (size_t)n) < 0) return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            int rc = pack_leaf(b, PyList_GET_ITEM(v, i), depth + 1);
            if (rc != 0) return rc;
        }
        return 0;
    }
    return 1; /* not a type this file packs */
}

/* [path key, writer origin, writer seq(, value)]: 0, 1 (left to the reference) or -1. */
static int pack_row(Buf *b, PyObject *path, PyObject *writers, PyObject *fields) {
    PyObject *w = PyDict_GetItemWithError(writers, path);
    if (w == NULL) return PyErr_Occurred() ? -1 : 1;
    if (!PyTuple_Check(w) || PyTuple_GET_SIZE(w) != 2 ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(w, 0)))
        return 1;
    PyObject *value = PyDict_GetItemWithError(fields, path);
    if (value == NULL && PyErr_Occurred()) return -1;
    uint64_t seq;
    if (as_u64(PyTuple_GET_ITEM(w, 1), &seq) < 0) {
        PyErr_Clear();
        return 1;
    }
    if (pack_array(b, value == NULL ? 3 : 4) < 0 || pack_path(b, path) < 0 ||
        pack_str(b, PyTuple_GET_ITEM(w, 0)) < 0 || pack_uint(b, seq) < 0)
        return -1;
    return value == NULL ? 0 : pack_leaf(b, value, 0);
}

static PyObject *encode_state(PyObject *self, PyObject *state) {
    (void)self;
    if (state_type == NULL || !Py_IS_TYPE(state, (PyTypeObject *)state_type)) {
        PyErr_SetString(PyExc_TypeError, "encode_state(state: ObjectState)");
        return NULL;
    }
    PyObject *order = STATE_SLOT(state, S_ORDER), *rows = STATE_SLOT(state, S_ROWS);
    PyObject *slot = STATE_SLOT(state, S_SLOT), *dirty = STATE_SLOT(state, S_DIRTY);
    PyObject *writers = STATE_SLOT(state, S_WRITERS), *fields = STATE_SLOT(state, S_FIELDS);
    PyObject *transfers = STATE_SLOT(state, S_TRANSFERS), *shares = STATE_SLOT(state, S_SHARES);
    PyObject *last = STATE_SLOT(state, S_LAST), *exists = STATE_SLOT(state, S_EXISTS);
    if (!PyList_CheckExact(order) || !PyList_CheckExact(rows) || !PyDict_CheckExact(slot) ||
        !PyList_CheckExact(dirty) || !PyDict_CheckExact(writers) || !PyDict_CheckExact(fields) ||
        !PyDict_CheckExact(transfers) || !PyDict_CheckExact(shares) ||
        PyList_GET_SIZE(order) != PyDict_GET_SIZE(writers) ||
        PyList_GET_SIZE(rows) != PyList_GET_SIZE(order) || PyDict_GET_SIZE(transfers) ||
        PyDict_GET_SIZE(shares) || (exists != Py_True && exists != Py_False) ||
        !PyUnicode_CheckExact(STATE_SLOT(state, S_KIND)) ||
        !PyUnicode_CheckExact(STATE_SLOT(state, S_NAME)))
        Py_RETURN_NONE;
    uint64_t revision, wall, counter, seq;
    if (as_u64(STATE_SLOT(state, S_REVISION), &revision) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (last != Py_None) {
        if (!PyTuple_CheckExact(last) || PyTuple_GET_SIZE(last) != 4 ||
            !PyUnicode_CheckExact(PyTuple_GET_ITEM(last, 2)) ||
            as_u64(PyTuple_GET_ITEM(last, 0), &wall) < 0 ||
            as_u64(PyTuple_GET_ITEM(last, 1), &counter) < 0 ||
            as_u64(PyTuple_GET_ITEM(last, 3), &seq) < 0) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    }

    /* The dirty rows, packed again, before anything is changed. */
    Py_ssize_t n_dirty = PyList_GET_SIZE(dirty);
    PyObject *fresh = PyList_New(n_dirty), *where = PyList_New(n_dirty), *result = NULL;
    Py_ssize_t *fresh_at = NULL;
    Buf b = {0};
    b.data = b.inline_;
    b.cap = sizeof b.inline_;
    if (fresh == NULL || where == NULL) goto done;
    for (Py_ssize_t i = 0; i < n_dirty; i++) {
        PyObject *path = PyList_GET_ITEM(dirty, i);
        PyObject *at = PyDict_GetItemWithError(slot, path);
        if (at == NULL) {
            if (PyErr_Occurred()) goto done;
            result = Py_NewRef(Py_None); /* a path not in order: the reference reorders */
            goto done;
        }
        Py_ssize_t index = PyLong_AsSsize_t(at);
        if (index < 0 || index >= PyList_GET_SIZE(rows)) {
            PyErr_Clear();
            result = Py_NewRef(Py_None);
            goto done;
        }
        b.len = 0;
        int rc = pack_row(&b, path, writers, fields);
        if (rc < 0) goto done;
        if (rc > 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        PyObject *row = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len);
        if (row == NULL) goto done;
        PyList_SET_ITEM(fresh, i, row);
        PyList_SET_ITEM(where, i, Py_NewRef(at));
    }

    /* [kind, name, exists, revision, last_key, [row...], transfers [], shares []] */
    b.len = 0;
    if (put_be(&b, 0, 0x98, 1) < 0 || pack_str(&b, STATE_SLOT(state, S_KIND)) < 0 ||
        pack_str(&b, STATE_SLOT(state, S_NAME)) < 0 ||
        put_be(&b, 0, exists == Py_True ? 0xc3 : 0xc2, 1) < 0 || pack_uint(&b, revision) < 0)
        goto done;
    if (last == Py_None) {
        if (put_be(&b, 0, 0xc0, 1) < 0) goto done;
    } else if (pack_array(&b, 4) < 0 || pack_uint(&b, wall) < 0 || pack_uint(&b, counter) < 0 ||
               pack_str(&b, PyTuple_GET_ITEM(last, 2)) < 0 || pack_uint(&b, seq) < 0) {
        goto done;
    }
    Py_ssize_t n_rows = PyList_GET_SIZE(rows);
    /* which fresh row replaces each row (+1; 0: none): a path listed twice, the last */
    if ((fresh_at = PyMem_Calloc((size_t)n_rows + 1, sizeof *fresh_at)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < n_dirty; j++)
        fresh_at[PyLong_AsSsize_t(PyList_GET_ITEM(where, j))] = j + 1;
    if (pack_array(&b, (size_t)n_rows) < 0) goto done;
    for (Py_ssize_t i = 0; i < n_rows; i++) {
        PyObject *row = fresh_at[i] ? PyList_GET_ITEM(fresh, fresh_at[i] - 1)
                                    : PyList_GET_ITEM(rows, i);
        if (!PyBytes_CheckExact(row)) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (put_bytes(&b, PyBytes_AS_STRING(row), (size_t)PyBytes_GET_SIZE(row)) < 0) goto done;
    }
    if (put_bytes(&b, "\x90\x90", 2) < 0) goto done;
    if ((result = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.len)) == NULL)
        goto done;

    /* Now the state's caches, as the reference leaves them. */
    for (Py_ssize_t j = 0; j < n_dirty; j++) {
        Py_ssize_t i = PyLong_AsSsize_t(PyList_GET_ITEM(where, j));
        if (PyList_SetItem(rows, i, Py_NewRef(PyList_GET_ITEM(fresh, j))) < 0) {
            Py_CLEAR(result);
            goto done;
        }
    }
    if (PyList_SetSlice(dirty, 0, n_dirty, NULL) < 0) Py_CLEAR(result);
done:
    buf_free(&b);
    PyMem_Free(fresh_at);
    Py_XDECREF(fresh);
    Py_XDECREF(where);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_O,
     "decode(envelope: bytes) -> Change | None: the change, or None where the reference "
     "(store._change) must decide."},
    {"configure", configure, METH_VARARGS, "Hand over the reference's types, memos and limits."},
    {"fold", (PyCFunction)(void (*)(void))fold, METH_FASTCALL,
     "fold(state, changes, start, owners, hprefix, history) -> int: apply changes[start:] "
     "until one the reference (store._fold.apply_change) must apply; its index."},
    {"configure_fold", configure_fold, METH_VARARGS,
     "Hand over ObjectState and the owner template parser."},
    {"encode_state", encode_state, METH_O,
     "encode_state(state) -> bytes | None: ObjectState.encode() for the common case, or None "
     "where the reference must encode."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "store._cchange",
    "The common shape of a change's envelope decoded in one pass (see store/_cchange.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cchange(void) {
    str_set = PyUnicode_InternFromString("set");
    str_new = PyUnicode_InternFromString("new");
    str_del = PyUnicode_InternFromString("del");
    if (!str_set || !str_new || !str_del) return NULL;
    return PyModule_Create(&module);
}
