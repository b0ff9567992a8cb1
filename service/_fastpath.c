/* service._fastpath: the per-reading work of the gateway's fast path, compiled.
 *
 * conversion_table(conversions) -> ConversionTable: the conversion table checked for shape and copied, read-only
 * body_envelope(body, device_id, patient_json, earliest_us, latest_us, prefix, table, message_id_max, max_readings,
 *               head) -> (envelope bytes, reading count) | None
 * columns(items, device_id, patient_id, earliest_us, latest_us, prefix, table, message_id_max)
 *   -> (message_ids, patient_ids, metrics, loinc_codes, values, units, measured_at_us) | None
 * message_id(prefix, metric, measured_at_us, value) -> str: the derived id alone
 *
 * ``body_envelope`` reads the request body itself: {"readings": [...]} or one reading object, with strings
 * of printable ASCII without escapes and numbers and nulls as values (anything else: None, and the caller
 * parses the body with orjson), and writes the envelope's JSON as it goes: ``head`` (the envelope up to
 * ``"readings":{``), then the seven columns. No Python object per reading is built; values are written as
 * repr() writes floats. ``columns`` takes the readings as orjson parsed them and returns the columns as lists.
 * Either result holds the envelope's columns (CONTRACT §2/§3 normalisation) when every reading is one the
 * per-reading path (service.validate + service.normalise) would accept unchanged for ``device_id``; otherwise
 * None, and the caller takes that path, which decides the status and the reject codes. None is always a safe
 * answer: anything unusual (a type, an escape, a repeated key, a timestamp form, an offset of 24 h) gives
 * None rather than a second implementation of a rule. tests/unit/test_gateway_fastpath.py holds the paths
 * equal.
 *
 * - ``conversions``: {metric name or LOINC code: {unit or None: (name, loinc, canonical unit, offset, scale,
 *   name, loinc and unit as JSON text in bytes)}}; canonical = (value + offset) * scale. ``conversion_table``
 *   checks every entry's shape and types once and keeps its own copy, which nothing can change in place (the
 *   ConversionTable is a read-only mapping; its inner mappings are mappingproxy views); the two paths only take
 *   a ConversionTable, so the memo below never goes stale and no entry is ever of the wrong shape.
 * - timestamps: YYYY-MM-DD[Tt ]HH:MM:SS[.fraction of 1-9 digits](Z|z|+HH:MM|-HH:MM), fraction truncated to
 *   microseconds, as datetime.fromisoformat reads them; offsets with HH <= 23 and MM <= 59, ASCII digits only;
 *   later than ``latest_us`` or earlier than ``earliest_us`` (the maximum reading age) gives None.
 * - a missing message_id is schemas.wire.derive_message_id: UUIDv5 of ``prefix`` (namespace bytes + device
 *   id + "|") followed by "<metric>|<measured_at_us>|<repr(value + 0.0)>", SHA-1 from OpenSSL's libcrypto.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#define COLUMNS 7
#define ID_TEXT_MAX 512
#define IDENTIFIER_MAX 64
#define NUMBER_TEXT_MAX 32

static PyObject *key_device_id, *key_patient_id, *key_message_id, *key_metric, *key_value, *key_unit,
    *key_measured_at;

static const char HEX[] = "0123456789abcdef";
static const char VARIANT[] = "89ab";

/* 1 if ``c[:length]`` matches ^[A-Za-z0-9._:-]{1,64}$ */
static int
is_identifier_text(const unsigned char *c, Py_ssize_t length)
{
    if (length < 1 || length > IDENTIFIER_MAX) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char x = c[i];
        if (!((x >= 'A' && x <= 'Z') || (x >= 'a' && x <= 'z') || (x >= '0' && x <= '9') || x == '.' ||
              x == '_' || x == ':' || x == '-')) {
            return 0;
        }
    }
    return 1;
}

static int
is_identifier(PyObject *text)
{
    return PyUnicode_CheckExact(text) && PyUnicode_IS_ASCII(text) &&
           is_identifier_text(PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text));
}

static int
digits(const unsigned char *c, int count, int *out)
{
    int value = 0;
    for (int i = 0; i < count; i++) {
        if (c[i] < '0' || c[i] > '9') {
            return 0;
        }
        value = value * 10 + (c[i] - '0');
    }
    *out = value;
    return 1;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Microseconds since the epoch of an RFC 3339 timestamp; 0 when it is not one this file reads. */
static int
parse_timestamp_text(const unsigned char *c, Py_ssize_t length, int64_t *out)
{
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, month, day, hour, minute, second, fraction = 0;
    if (length < 20 || c[4] != '-' || c[7] != '-' || c[13] != ':' || c[16] != ':' ||
        (c[10] != 'T' && c[10] != 't' && c[10] != ' ') || !digits(c, 4, &year) || !digits(c + 5, 2, &month) ||
        !digits(c + 8, 2, &day) || !digits(c + 11, 2, &hour) || !digits(c + 14, 2, &minute) ||
        !digits(c + 17, 2, &second)) {
        return 0;
    }
    Py_ssize_t at = 19;
    if (c[at] == '.') {
        Py_ssize_t start = ++at;
        while (at < length && c[at] >= '0' && c[at] <= '9') {
            at++;
        }
        Py_ssize_t count = at - start;
        if (count < 1 || count > 9) {
            return 0;
        }
        for (Py_ssize_t i = 0; i < 6; i++) {
            fraction = fraction * 10 + (i < count ? c[start + i] - '0' : 0);
        }
    }
    int64_t offset_minutes = 0;
    if (at + 1 == length && (c[at] == 'Z' || c[at] == 'z')) {
        offset_minutes = 0;
    }
    else if (at + 6 == length && (c[at] == '+' || c[at] == '-') && c[at + 3] == ':') {
        int offset_hours, offset_mins;
        if (!digits(c + at + 1, 2, &offset_hours) || !digits(c + at + 4, 2, &offset_mins) || offset_hours > 23 ||
            offset_mins > 59) {
            return 0;
        }
        offset_minutes = (int64_t)offset_hours * 60 + offset_mins;
        if (c[at] == '-') {
            offset_minutes = -offset_minutes;
        }
    }
    else {
        return 0;
    }
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) {
        return 0;
    }
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > month_days[month - 1] + (month == 2 && leap)) {
        return 0;
    }
    int64_t seconds = days_from_civil(year, month, day) * 86400 + (int64_t)hour * 3600 + (int64_t)minute * 60 +
                      second - offset_minutes * 60;
    *out = seconds * 1000000 + fraction;
    return 1;
}

static int
parse_timestamp(PyObject *text, int64_t *out)
{
    return PyUnicode_CheckExact(text) && PyUnicode_IS_ASCII(text) &&
           parse_timestamp_text(PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text), out);
}

/* Decimal text of ``value`` at ``out`` (room for 20 characters); its length. */
static size_t
integer_text(char *out, int64_t value)
{
    char digits[20];
    size_t count = 0;
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do {
        digits[count++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    size_t length = 0;
    if (value < 0) {
        out[length++] = '-';
    }
    while (count) {
        out[length++] = digits[--count];
    }
    return length;
}

/* repr(value) at ``out`` (room for NUMBER_TEXT_MAX characters); its length, 0 with an exception set. */
static size_t
number_text(char *out, double value)
{
    if (fabs(value) < 1e16 && value == (double)(int64_t)value && !signbit(value)) {
        /* repr() of an integral float below 1e16: its digits and ".0" */
        size_t length = integer_text(out, (int64_t)value);
        out[length++] = '.';
        out[length++] = '0';
        return length;
    }
    char *number = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (number == NULL) {
        return 0;
    }
    size_t length = strlen(number);
    if (length > NUMBER_TEXT_MAX) {
        PyMem_Free(number);
        PyErr_SetString(PyExc_ValueError, "number text too long");
        return 0;
    }
    memcpy(out, number, length);
    PyMem_Free(number);
    return length;
}

/* The derived message id at ``out`` (36 characters): UUIDv5 text of
 * SHA-1(prefix + "<name>|<us>|<repr(value + 0.0)>"). 0 with an exception set. */
static int
derived_id_text(char *out, const char *prefix, Py_ssize_t prefix_length, PyObject *name, int64_t measured_at_us,
                double value)
{
    unsigned char buffer[ID_TEXT_MAX];
    Py_ssize_t name_length;
    const char *name_text = PyUnicode_AsUTF8AndSize(name, &name_length);
    if (name_text == NULL) {
        return 0;
    }
    if ((size_t)prefix_length + (size_t)name_length + NUMBER_TEXT_MAX + 24 > sizeof(buffer)) {
        PyErr_SetString(PyExc_ValueError, "message id text too long");
        return 0;
    }
    size_t at = 0;
    memcpy(buffer, prefix, (size_t)prefix_length);
    at += (size_t)prefix_length;
    memcpy(buffer + at, name_text, (size_t)name_length);
    at += (size_t)name_length;
    buffer[at++] = '|';
    at += integer_text((char *)buffer + at, measured_at_us);
    buffer[at++] = '|';
    size_t number_length = number_text((char *)buffer + at, value + 0.0); /* -0.0 is taken as 0.0 */
    if (number_length == 0) {
        return 0;
    }
    at += number_length;

    /* One digest context and one fetched SHA-1, reused (the GIL serialises callers): a one-shot call would
     * fetch the algorithm and allocate a context every time. */
    static EVP_MD *sha1;
    static EVP_MD_CTX *context;
    if (sha1 == NULL && (sha1 = EVP_MD_fetch(NULL, "SHA1", NULL)) == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL has no SHA-1");
        return 0;
    }
    if (context == NULL && (context = EVP_MD_CTX_new()) == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    if (!EVP_DigestInit_ex2(context, sha1, NULL) || !EVP_DigestUpdate(context, buffer, at) ||
        !EVP_DigestFinal_ex(context, digest, NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "SHA-1 failed");
        return 0;
    }
    char hex[32];
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = HEX[digest[i] >> 4];
        hex[2 * i + 1] = HEX[digest[i] & 15];
    }
    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    out[14] = '5';
    memcpy(out + 15, hex + 13, 3);
    out[18] = '-';
    int variant_digit = hex[16] <= '9' ? hex[16] - '0' : hex[16] - 'a' + 10;
    out[19] = VARIANT[variant_digit & 3];
    memcpy(out + 20, hex + 17, 3);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    return 1;
}

static PyObject *
derived_id(const char *prefix, Py_ssize_t prefix_length, PyObject *name, int64_t measured_at_us, double value)
{
    char text[36];
    if (!derived_id_text(text, prefix, prefix_length, name, measured_at_us, value)) {
        return NULL;
    }
    return PyUnicode_FromStringAndSize(text, 36);
}

/* -- the conversion table: checked once, copied, read-only ------------------------------------------ */

typedef struct {
    PyObject_HEAD PyObject *table; /* {metric: {unit or None: entry}}: private dicts, never changed */
} ConversionTable;

static void
ConversionTable_dealloc(ConversionTable *self)
{
    Py_CLEAR(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
ConversionTable_length(ConversionTable *self)
{
    return PyDict_GET_SIZE(self->table);
}

/* table[metric]: a read-only view (mappingproxy) of {unit or None: entry}. */
static PyObject *
ConversionTable_subscript(ConversionTable *self, PyObject *key)
{
    PyObject *by_unit = PyDict_GetItemWithError(self->table, key);
    if (by_unit == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetObject(PyExc_KeyError, key);
        }
        return NULL;
    }
    return PyDictProxy_New(by_unit);
}

static PyObject *
ConversionTable_iter(ConversionTable *self)
{
    return PyObject_GetIter(self->table);
}

static PyMappingMethods ConversionTable_mapping = {
    .mp_length = (lenfunc)ConversionTable_length,
    .mp_subscript = (binaryfunc)ConversionTable_subscript,
};

static PyTypeObject ConversionTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "service._fastpath.ConversionTable",
    .tp_basicsize = sizeof(ConversionTable),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .tp_doc = "The fast path's conversion table: checked for shape once, a private copy, read-only.",
    .tp_dealloc = (destructor)ConversionTable_dealloc,
    .tp_as_mapping = &ConversionTable_mapping,
    .tp_iter = (getiterfunc)ConversionTable_iter,
};

/* 1 if ``entry`` is (str, str, str, float, float, bytes, bytes, bytes), else 0 with TypeError set. */
static int
entry_shape(PyObject *entry)
{
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 8) {
        PyErr_SetString(PyExc_TypeError, "a conversion entry is a tuple of 8 items");
        return 0;
    }
    for (Py_ssize_t i = 0; i < 8; i++) {
        PyObject *item = PyTuple_GET_ITEM(entry, i);
        int ok = i < 3 ? PyUnicode_CheckExact(item) : i < 5 ? PyFloat_CheckExact(item) : PyBytes_CheckExact(item);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "item %zd of a conversion entry must be %s", i,
                         i < 3   ? "str"
                         : i < 5 ? "float"
                                 : "bytes");
            return 0;
        }
    }
    return 1;
}

static PyObject *
conversion_table(PyObject *Py_UNUSED(module), PyObject *conversions)
{
    if (!PyDict_CheckExact(conversions)) {
        PyErr_SetString(PyExc_TypeError, "conversion_table takes a dict");
        return NULL;
    }
    PyObject *copy = PyDict_New();
    if (copy == NULL) {
        return NULL;
    }
    PyObject *metric, *by_unit;
    Py_ssize_t at = 0;
    while (PyDict_Next(conversions, &at, &metric, &by_unit)) {
        if (!PyUnicode_CheckExact(metric) || !PyDict_CheckExact(by_unit)) {
            PyErr_SetString(PyExc_TypeError, "the conversion table maps str to dict");
            Py_DECREF(copy);
            return NULL;
        }
        PyObject *inner = PyDict_New();
        if (inner == NULL || PyDict_SetItem(copy, metric, inner) < 0) {
            Py_XDECREF(inner);
            Py_DECREF(copy);
            return NULL;
        }
        Py_DECREF(inner); /* held by copy */
        PyObject *unit, *entry;
        Py_ssize_t inner_at = 0;
        while (PyDict_Next(by_unit, &inner_at, &unit, &entry)) {
            if ((unit != Py_None && !PyUnicode_CheckExact(unit)) || !entry_shape(entry)) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_TypeError, "a unit is str or None");
                }
                Py_DECREF(copy);
                return NULL;
            }
            if (PyDict_SetItem(inner, unit, entry) < 0) {
                Py_DECREF(copy);
                return NULL;
            }
        }
    }
    ConversionTable *table = PyObject_New(ConversionTable, &ConversionTableType);
    if (table == NULL) {
        Py_DECREF(copy);
        return NULL;
    }
    table->table = copy;
    return (PyObject *)table;
}

/* The value in the canonical unit of ``entry``; 0 when it is not finite or the reading is too far ahead. */
static int
canonical_value(PyObject *entry, double number, int64_t measured_at_us, long long earliest_us, long long latest_us,
                double *out)
{
    *out = (number + PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(entry, 3))) * PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(entry, 4));
    return isfinite(*out) && measured_at_us <= latest_us && measured_at_us >= earliest_us;
}

/* The envelope's columns being filled: message ids, patient ids, metrics, LOINC codes, values, units, times. */
typedef struct {
    PyObject *lists[COLUMNS];
    PyObject *device_id;
    const unsigned char *device;
    Py_ssize_t device_length;
    PyObject *patient_id;
    long long earliest_us;
    long long latest_us;
    const char *prefix;
    Py_ssize_t prefix_length;
    PyObject *conversions;
    Py_ssize_t message_id_max;
} table;

static int
table_open(table *t)
{
    for (int c = 0; c < COLUMNS; c++) {
        t->lists[c] = PyList_New(0);
        if (t->lists[c] == NULL) {
            return -1;
        }
    }
    return 0;
}

static void
table_drop(table *t)
{
    for (int c = 0; c < COLUMNS; c++) {
        Py_CLEAR(t->lists[c]);
    }
}

/* The tuple of the columns (the table gives its lists away), or NULL. */
static PyObject *
table_close(table *t)
{
    PyObject *result = PyTuple_New(COLUMNS);
    if (result == NULL) {
        table_drop(t);
        return NULL;
    }
    for (int c = 0; c < COLUMNS; c++) {
        PyTuple_SET_ITEM(result, c, t->lists[c]);
        t->lists[c] = NULL;
    }
    return result;
}

/* The conversion entry of (metric, unit) (borrowed), NULL if unknown; -1 in *error on a lookup error. */
static PyObject *
conversion(table *t, PyObject *metric, PyObject *unit, int *error)
{
    PyObject *by_unit = PyDict_GetItemWithError(t->conversions, metric);
    PyObject *entry = by_unit == NULL ? NULL : PyDict_GetItemWithError(by_unit, unit);
    if (entry == NULL && PyErr_Occurred()) {
        *error = 1;
    }
    return entry;
}

/* Appends a row; ``message_id`` NULL derives one. 1 done, 0 not for the fast path, -1 error. */
static int
table_append(table *t, PyObject *entry, double number, int64_t measured_at_us, PyObject *patient,
             PyObject *message_id)
{
    double canonical;
    if (!canonical_value(entry, number, measured_at_us, t->earliest_us, t->latest_us, &canonical)) {
        return 0;
    }
    PyObject *name = PyTuple_GET_ITEM(entry, 0);
    PyObject *id = message_id != NULL ? Py_NewRef(message_id)
                                      : derived_id(t->prefix, t->prefix_length, name, measured_at_us, canonical);
    PyObject *stamp = PyLong_FromLongLong(measured_at_us);
    PyObject *value = PyFloat_FromDouble(canonical);
    PyObject *row[COLUMNS] = {id, patient, name, PyTuple_GET_ITEM(entry, 1), value, PyTuple_GET_ITEM(entry, 2),
                              stamp};
    int failed = id == NULL || stamp == NULL || value == NULL;
    for (int c = 0; c < COLUMNS && !failed; c++) {
        failed = PyList_Append(t->lists[c], row[c]) < 0;
    }
    Py_XDECREF(id);
    Py_XDECREF(stamp);
    Py_XDECREF(value);
    return failed ? -1 : 1;
}

/* -- readings as orjson parsed them ----------------------------------------------------------------- */

/* A field of ``item`` (borrowed) or NULL when absent; 1 in *error on a lookup error. */
static PyObject *
field(PyObject *item, PyObject *key, Py_ssize_t *found, int *error)
{
    PyObject *value = PyDict_GetItemWithError(item, key);
    if (value == NULL) {
        if (PyErr_Occurred()) {
            *error = 1;
        }
        return NULL;
    }
    (*found)++;
    return value;
}

/* Appends the row of a parsed reading; 1 done, 0 not for the fast path, -1 error. */
static int
object_reading(table *t, PyObject *item)
{
    if (!PyDict_CheckExact(item)) {
        return 0;
    }
    Py_ssize_t found = 0;
    int error = 0;
    PyObject *device = field(item, key_device_id, &found, &error);
    PyObject *metric = field(item, key_metric, &found, &error);
    PyObject *value = field(item, key_value, &found, &error);
    PyObject *measured_at = field(item, key_measured_at, &found, &error);
    PyObject *unit = field(item, key_unit, &found, &error);
    PyObject *patient = field(item, key_patient_id, &found, &error);
    PyObject *message_id = field(item, key_message_id, &found, &error);
    if (error) {
        return -1;
    }
    if (found != PyDict_GET_SIZE(item) || device == NULL || metric == NULL || value == NULL ||
        measured_at == NULL) {
        return 0; /* an unknown field, or a required one missing */
    }
    if (!PyUnicode_CheckExact(device) || !PyUnicode_CheckExact(metric)) {
        return 0;
    }
    int same = PyUnicode_Compare(device, t->device_id);
    if (same == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (same != 0) {
        return 0;
    }
    if (unit == NULL) {
        unit = Py_None;
    }
    else if (unit != Py_None && !PyUnicode_CheckExact(unit)) {
        return 0;
    }
    PyObject *entry = conversion(t, metric, unit, &error);
    if (entry == NULL) {
        return error ? -1 : 0;
    }
    double number;
    if (PyFloat_CheckExact(value)) {
        number = PyFloat_AS_DOUBLE(value);
    }
    else if (PyLong_CheckExact(value)) {
        number = PyLong_AsDouble(value);
        if (number == -1.0 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                return -1;
            }
            PyErr_Clear();
            return 0;
        }
    }
    else {
        return 0;
    }
    int64_t measured_at_us;
    if (!parse_timestamp(measured_at, &measured_at_us)) {
        return 0;
    }
    if (patient == NULL || patient == Py_None) {
        patient = t->patient_id;
    }
    else if (!is_identifier(patient)) {
        return 0;
    }
    if (message_id == Py_None) {
        message_id = NULL;
    }
    else if (message_id != NULL &&
             (!PyUnicode_CheckExact(message_id) || PyUnicode_GET_LENGTH(message_id) < 1 ||
              PyUnicode_GET_LENGTH(message_id) > t->message_id_max)) {
        return 0;
    }
    return table_append(t, entry, number, measured_at_us, patient, message_id);
}

static int
table_args(table *t, PyObject *device_id, PyObject *patient_id, long long earliest_us, long long latest_us,
           const char *prefix, Py_ssize_t prefix_length, PyObject *conversions, Py_ssize_t message_id_max)
{
    memset(t, 0, sizeof(*t));
    if (!PyUnicode_IS_ASCII(device_id)) {
        return 0;
    }
    t->device_id = device_id;
    t->device = PyUnicode_1BYTE_DATA(device_id);
    t->device_length = PyUnicode_GET_LENGTH(device_id);
    t->patient_id = patient_id;
    t->earliest_us = earliest_us;
    t->latest_us = latest_us;
    t->prefix = prefix;
    t->prefix_length = prefix_length;
    t->conversions = conversions;
    t->message_id_max = message_id_max;
    return 1;
}

static PyObject *
columns(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *items, *device_id, *patient_id, *conversions;
    long long earliest_us, latest_us;
    const char *prefix;
    Py_ssize_t prefix_length, message_id_max;
    if (!PyArg_ParseTuple(args, "O!UOLLy#O!n:columns", &PyList_Type, &items, &device_id, &patient_id, &earliest_us,
                          &latest_us, &prefix, &prefix_length, &ConversionTableType, &conversions,
                          &message_id_max)) {
        return NULL;
    }
    table t;
    if (!table_args(&t, device_id, patient_id, earliest_us, latest_us, prefix, prefix_length,
                    ((ConversionTable *)conversions)->table, message_id_max) ||
        PyList_GET_SIZE(items) == 0) {
        Py_RETURN_NONE;
    }
    if (table_open(&t) < 0) {
        table_drop(&t);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        int done = object_reading(&t, PyList_GET_ITEM(items, i));
        if (done <= 0) {
            table_drop(&t);
            if (done < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    return table_close(&t);
}

/* -- readings straight from the request body ---------------------------------------------------------- */

typedef struct {
    const unsigned char *at;
    const unsigned char *end;
} cursor;

enum { NOTHING, NUL, STRING, NUMBER };

typedef struct {
    int kind;
    const unsigned char *text; /* STRING */
    Py_ssize_t length;
    double number; /* NUMBER */
} scalar;

static void
skip_space(cursor *c)
{
    while (c->at < c->end && (*c->at == ' ' || *c->at == '\n' || *c->at == '\r' || *c->at == '\t')) {
        c->at++;
    }
}

static int
take(cursor *c, unsigned char expected)
{
    skip_space(c);
    if (c->at < c->end && *c->at == expected) {
        c->at++;
        return 1;
    }
    return 0;
}

/* A string of printable ASCII without escapes (anything else: 0, for the general path). */
static int
string_token(cursor *c, const unsigned char **text, Py_ssize_t *length)
{
    if (!take(c, '"')) {
        return 0;
    }
    const unsigned char *start = c->at;
    const unsigned char *quote = memchr(start, '"', (size_t)(c->end - start));
    if (quote == NULL) {
        return 0;
    }
    for (const unsigned char *x = start; x < quote; x++) {
        if (*x == '\\' || *x < 0x20 || *x >= 0x80) {
            return 0;
        }
    }
    *text = start;
    *length = quote - start;
    c->at = quote + 1;
    return 1;
}

static int
is_digit(cursor *c)
{
    return c->at < c->end && *c->at >= '0' && *c->at <= '9';
}

/* A JSON number: integers of up to 18 digits exactly, others with Python's correctly rounded strtod. */
static int
number_token(cursor *c, double *out)
{
    const unsigned char *start = c->at;
    int negative = c->at < c->end && *c->at == '-';
    c->at += negative;
    if (!is_digit(c)) {
        return 0;
    }
    if (*c->at == '0') {
        c->at++;
    }
    else {
        while (is_digit(c)) {
            c->at++;
        }
    }
    Py_ssize_t integer_digits = c->at - start - negative;
    int fractional = 0;
    if (c->at < c->end && *c->at == '.') {
        c->at++;
        fractional = 1;
        if (!is_digit(c)) {
            return 0;
        }
        while (is_digit(c)) {
            c->at++;
        }
    }
    if (c->at < c->end && (*c->at == 'e' || *c->at == 'E')) {
        c->at++;
        fractional = 1;
        if (c->at < c->end && (*c->at == '+' || *c->at == '-')) {
            c->at++;
        }
        if (!is_digit(c)) {
            return 0;
        }
        while (is_digit(c)) {
            c->at++;
        }
    }
    Py_ssize_t length = c->at - start;
    if (!fractional) {
        if (integer_digits > 18) {
            return 0;
        }
        int64_t value = 0;
        for (const unsigned char *d = start + negative; d < c->at; d++) {
            value = value * 10 + (*d - '0');
        }
        *out = (double)(negative ? -value : value);
        return 1;
    }
    char text[64];
    if (length >= (Py_ssize_t)sizeof(text)) {
        return 0;
    }
    memcpy(text, start, (size_t)length);
    text[length] = '\0';
    char *stop;
    double value = PyOS_string_to_double(text, &stop, NULL);
    if (value == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (stop != text + length || !isfinite(value)) {
        return 0;
    }
    *out = value;
    return 1;
}

static int
scalar_token(cursor *c, scalar *value)
{
    skip_space(c);
    if (c->at >= c->end) {
        return 0;
    }
    if (*c->at == '"') {
        value->kind = STRING;
        return string_token(c, &value->text, &value->length);
    }
    if (*c->at == 'n') {
        if (c->end - c->at < 4 || memcmp(c->at, "null", 4) != 0) {
            return 0;
        }
        c->at += 4;
        value->kind = NUL;
        return 1;
    }
    value->kind = NUMBER;
    return number_token(c, &value->number);
}

enum { F_DEVICE_ID, F_PATIENT_ID, F_MESSAGE_ID, F_METRIC, F_VALUE, F_UNIT, F_MEASURED_AT, FIELDS };

static int
field_index(const unsigned char *key, Py_ssize_t length)
{
    static const char *names[FIELDS] = {"device_id", "patient_id", "message_id", "metric",
                                        "value",     "unit",       "measured_at"};
    for (int f = 0; f < FIELDS; f++) {
        if ((Py_ssize_t)strlen(names[f]) == length && memcmp(names[f], key, (size_t)length) == 0) {
            return f;
        }
    }
    return -1;
}

/* A str of ASCII text, NULL on error. */
static PyObject *
ascii(const unsigned char *text, Py_ssize_t length)
{
    PyObject *result = PyUnicode_New(length, 127);
    if (result != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(result), text, (size_t)length);
    }
    return result;
}

typedef struct {
    char *data;
    size_t length;
    size_t capacity;
} text;

static int
text_put(text *b, const void *data, size_t length)
{
    if (b->length + length > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 512;
        while (capacity < b->length + length) {
            capacity *= 2;
        }
        char *grown = PyMem_Realloc(b->data, capacity);
        if (grown == NULL) {
            PyErr_NoMemory();
            return 0;
        }
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->length, data, length);
    b->length += length;
    return 1;
}

static int
text_quoted(text *b, const void *data, size_t length)
{
    return text_put(b, "\"", 1) && text_put(b, data, length) && text_put(b, "\"", 1);
}

static int
text_bytes(text *b, PyObject *bytes)
{
    return text_put(b, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
}

/* The envelope's reading columns as JSON array contents, written while the body is read. */
typedef struct {
    text columns[COLUMNS];
    Py_ssize_t count;
    const unsigned char *device;
    Py_ssize_t device_length;
    const char *patient_json; /* the registered patient: JSON text */
    Py_ssize_t patient_json_length;
    long long earliest_us;
    long long latest_us;
    const char *prefix;
    Py_ssize_t prefix_length;
    PyObject *conversions;
    Py_ssize_t message_id_max;
} writer;

/* Writes the row of a reading; 1 done, 0 not for the fast path, -1 error. */
static int
write_row(writer *w, PyObject *entry, double number, int64_t measured_at_us, const scalar *patient,
          const scalar *message_id)
{
    double canonical; /* the entry's shape was checked by conversion_table */
    if (!canonical_value(entry, number, measured_at_us, w->earliest_us, w->latest_us, &canonical)) {
        return 0;
    }
    char id[36];
    if (message_id->kind != STRING &&
        !derived_id_text(id, w->prefix, w->prefix_length, PyTuple_GET_ITEM(entry, 0), measured_at_us, canonical)) {
        return -1;
    }
    char number_buffer[NUMBER_TEXT_MAX];
    size_t number_length = number_text(number_buffer, canonical);
    if (number_length == 0) {
        return -1;
    }
    char stamp[24];
    size_t stamp_length = integer_text(stamp, measured_at_us);
    text *c = w->columns;
    if (w->count > 0) {
        for (int i = 0; i < COLUMNS; i++) {
            if (!text_put(&c[i], ",", 1)) {
                return -1;
            }
        }
    }
    int ok = (message_id->kind == STRING ? text_quoted(&c[0], message_id->text, (size_t)message_id->length)
                                         : text_quoted(&c[0], id, sizeof(id))) &&
             (patient->kind == STRING ? text_quoted(&c[1], patient->text, (size_t)patient->length)
                                      : text_put(&c[1], w->patient_json, (size_t)w->patient_json_length)) &&
             text_bytes(&c[2], PyTuple_GET_ITEM(entry, 5)) && text_bytes(&c[3], PyTuple_GET_ITEM(entry, 6)) &&
             text_put(&c[4], number_buffer, number_length) && text_bytes(&c[5], PyTuple_GET_ITEM(entry, 7)) &&
             text_put(&c[6], stamp, stamp_length);
    if (!ok) {
        return -1;
    }
    w->count++;
    return 1;
}

/* A memo of conversion entries by metric and unit text, in front of the ``conversions`` dict: a reading's
 * lookup without building its strings. It holds references to the entries of one dict, and is emptied when
 * another dict is passed. Misses (and keys too long for it) go to the dict. */
#define MEMO_SLOTS 256
#define MEMO_KEY_MAX 96
#define MEMO_PROBES 8

typedef struct {
    Py_ssize_t length; /* 0: free */
    unsigned char key[MEMO_KEY_MAX];
    PyObject *entry;
} memo_slot;

static memo_slot memo[MEMO_SLOTS];
static PyObject *memo_source; /* the dict the memo holds entries of (a strong reference) */

/* "<metric>\0<unit>" or "<metric>\0\1" when there is no unit; 0 when it does not fit. */
static Py_ssize_t
memo_key(unsigned char *key, const scalar *metric, const scalar *unit)
{
    Py_ssize_t unit_length = unit->kind == STRING ? unit->length : 1;
    Py_ssize_t length = metric->length + 1 + unit_length;
    if (length > MEMO_KEY_MAX) {
        return 0;
    }
    memcpy(key, metric->text, (size_t)metric->length);
    key[metric->length] = '\0';
    if (unit->kind == STRING) {
        memcpy(key + metric->length + 1, unit->text, (size_t)unit_length);
    }
    else {
        key[metric->length + 1] = '\1';
    }
    return length;
}

static size_t
memo_hash(const unsigned char *key, Py_ssize_t length)
{
    uint64_t hash = 1469598103934665603ULL; /* FNV-1a */
    for (Py_ssize_t i = 0; i < length; i++) {
        hash = (hash ^ key[i]) * 1099511628211ULL;
    }
    return (size_t)(hash ^ (hash >> 29));
}

static void
memo_clear(void)
{
    for (size_t i = 0; i < MEMO_SLOTS; i++) {
        memo[i].length = 0;
        Py_CLEAR(memo[i].entry);
    }
    Py_CLEAR(memo_source);
}

/* The memoised entry (borrowed) or NULL. */
static PyObject *
memo_get(PyObject *conversions, const unsigned char *key, Py_ssize_t length)
{
    if (conversions != memo_source) {
        memo_clear();
        memo_source = Py_NewRef(conversions);
        return NULL;
    }
    if (length == 0) {
        return NULL;
    }
    size_t at = memo_hash(key, length);
    for (int probe = 0; probe < MEMO_PROBES; probe++) {
        memo_slot *slot = &memo[(at + (size_t)probe) % MEMO_SLOTS];
        if (slot->length == 0) {
            return NULL;
        }
        if (slot->length == length && memcmp(slot->key, key, (size_t)length) == 0) {
            return slot->entry;
        }
    }
    return NULL;
}

static void
memo_put(const unsigned char *key, Py_ssize_t length, PyObject *entry)
{
    if (length == 0) {
        return;
    }
    size_t at = memo_hash(key, length);
    for (int probe = 0; probe < MEMO_PROBES; probe++) {
        memo_slot *slot = &memo[(at + (size_t)probe) % MEMO_SLOTS];
        if (slot->length == 0) {
            memcpy(slot->key, key, (size_t)length);
            slot->length = length;
            slot->entry = Py_NewRef(entry);
            return;
        }
    }
}

/* Parses one reading object and writes its row; 1 done, 0 not for the fast path, -1 error. */
static int
body_reading(writer *w, cursor *c)
{
    scalar fields[FIELDS];
    for (int f = 0; f < FIELDS; f++) {
        fields[f].kind = NOTHING;
    }
    if (!take(c, '{')) {
        return 0;
    }
    do {
        const unsigned char *key;
        Py_ssize_t key_length;
        if (!string_token(c, &key, &key_length) || !take(c, ':')) {
            return 0;
        }
        int f = field_index(key, key_length);
        if (f < 0 || fields[f].kind != NOTHING || !scalar_token(c, &fields[f])) {
            return 0; /* an unknown or repeated field, or a value of another type */
        }
    } while (take(c, ','));
    if (!take(c, '}')) {
        return 0;
    }
    scalar *device = &fields[F_DEVICE_ID], *metric = &fields[F_METRIC], *value = &fields[F_VALUE],
           *measured_at = &fields[F_MEASURED_AT], *unit = &fields[F_UNIT], *patient = &fields[F_PATIENT_ID],
           *message_id = &fields[F_MESSAGE_ID];
    if (device->kind != STRING || device->length != w->device_length ||
        memcmp(device->text, w->device, (size_t)device->length) != 0 || metric->kind != STRING ||
        value->kind != NUMBER || measured_at->kind != STRING || unit->kind == NUMBER || patient->kind == NUMBER ||
        message_id->kind == NUMBER) {
        return 0;
    }
    int64_t measured_at_us;
    if (!parse_timestamp_text(measured_at->text, measured_at->length, &measured_at_us)) {
        return 0;
    }
    if (patient->kind == STRING && !is_identifier_text(patient->text, patient->length)) {
        return 0;
    }
    if (message_id->kind == STRING && (message_id->length < 1 || message_id->length > w->message_id_max)) {
        return 0;
    }
    unsigned char key[MEMO_KEY_MAX];
    Py_ssize_t key_length = memo_key(key, metric, unit);
    PyObject *entry = memo_get(w->conversions, key, key_length);
    if (entry != NULL) {
        return write_row(w, entry, value->number, measured_at_us, patient, message_id);
    }
    PyObject *metric_text = ascii(metric->text, metric->length);
    PyObject *unit_text = unit->kind == STRING ? ascii(unit->text, unit->length) : Py_NewRef(Py_None);
    int done = -1;
    if (metric_text != NULL && unit_text != NULL) {
        PyObject *by_unit = PyDict_GetItemWithError(w->conversions, metric_text);
        entry = by_unit == NULL ? NULL : PyDict_GetItemWithError(by_unit, unit_text);
        if (entry != NULL) {
            memo_put(key, key_length, entry);
            done = write_row(w, entry, value->number, measured_at_us, patient, message_id);
        }
        else if (!PyErr_Occurred()) {
            done = 0;
        }
    }
    Py_XDECREF(metric_text);
    Py_XDECREF(unit_text);
    return done;
}

/* The readings of a body: {"readings": [reading, ...]} or one reading; 1 done, 0 not for the fast path. */
static int
body_readings(writer *w, cursor *c, Py_ssize_t max_readings)
{
    cursor start = *c;
    const unsigned char *key;
    Py_ssize_t key_length;
    if (!take(c, '{') || !string_token(c, &key, &key_length)) {
        return 0;
    }
    if (key_length != 8 || memcmp(key, "readings", 8) != 0) {
        *c = start;
        int done = body_reading(w, c);
        skip_space(c);
        return done <= 0 ? done : c->at == c->end;
    }
    if (!take(c, ':') || !take(c, '[')) {
        return 0;
    }
    do {
        if (w->count >= max_readings) {
            return 0;
        }
        int done = body_reading(w, c);
        if (done <= 0) {
            return done;
        }
    } while (take(c, ','));
    if (!take(c, ']') || !take(c, '}')) {
        return 0;
    }
    skip_space(c);
    return c->at == c->end;
}

static const char *COLUMN_HEADS[COLUMNS] = {
    "\"message_id\":[", "],\"patient_id\":[", "],\"metric\":[", "],\"loinc_code\":[",
    "],\"value\":[",    "],\"unit\":[",       "],\"measured_at_us\":[",
};

/* head + the columns + "]}}" as one bytes object. */
static PyObject *
envelope_bytes(writer *w, const char *head, Py_ssize_t head_length)
{
    size_t size = (size_t)head_length + 3;
    for (int i = 0; i < COLUMNS; i++) {
        size += strlen(COLUMN_HEADS[i]) + w->columns[i].length;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (result == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(result);
    memcpy(out, head, (size_t)head_length);
    out += head_length;
    for (int i = 0; i < COLUMNS; i++) {
        size_t length = strlen(COLUMN_HEADS[i]);
        memcpy(out, COLUMN_HEADS[i], length);
        out += length;
        if (w->columns[i].length) {
            memcpy(out, w->columns[i].data, w->columns[i].length);
            out += w->columns[i].length;
        }
    }
    memcpy(out, "]}}", 3);
    return result;
}

static PyObject *
body_envelope(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer body;
    PyObject *device_id, *conversions;
    const char *patient_json, *prefix, *head;
    Py_ssize_t patient_json_length, prefix_length, head_length, message_id_max, max_readings;
    long long earliest_us, latest_us;
    if (!PyArg_ParseTuple(args, "y*Uy#LLy#O!nny#:body_envelope", &body, &device_id, &patient_json,
                          &patient_json_length, &earliest_us, &latest_us, &prefix, &prefix_length,
                          &ConversionTableType, &conversions, &message_id_max, &max_readings, &head, &head_length)) {
        return NULL;
    }
    PyObject *result = NULL;
    writer w;
    memset(&w, 0, sizeof(w));
    if (!PyUnicode_IS_ASCII(device_id)) {
        result = Py_NewRef(Py_None);
    }
    else {
        w.device = PyUnicode_1BYTE_DATA(device_id);
        w.device_length = PyUnicode_GET_LENGTH(device_id);
        w.patient_json = patient_json;
        w.patient_json_length = patient_json_length;
        w.earliest_us = earliest_us;
        w.latest_us = latest_us;
        w.prefix = prefix;
        w.prefix_length = prefix_length;
        w.conversions = ((ConversionTable *)conversions)->table;
        w.message_id_max = message_id_max;
        cursor c = {(const unsigned char *)body.buf, (const unsigned char *)body.buf + body.len};
        int done = body_readings(&w, &c, max_readings);
        if (done > 0) {
            PyObject *data = envelope_bytes(&w, head, head_length);
            result = data == NULL ? NULL : Py_BuildValue("(Nn)", data, w.count);
        }
        else if (done == 0) {
            result = Py_NewRef(Py_None);
        }
    }
    for (int i = 0; i < COLUMNS; i++) {
        PyMem_Free(w.columns[i].data);
    }
    PyBuffer_Release(&body);
    return result;
}

static PyObject *
message_id(PyObject *Py_UNUSED(module), PyObject *args)
{
    const char *prefix;
    Py_ssize_t prefix_length;
    PyObject *name;
    long long measured_at_us;
    double value;
    if (!PyArg_ParseTuple(args, "y#ULd:message_id", &prefix, &prefix_length, &name, &measured_at_us, &value)) {
        return NULL;
    }
    return derived_id(prefix, prefix_length, name, measured_at_us, value);
}

static PyMethodDef methods[] = {
    {"body_envelope", body_envelope, METH_VARARGS,
     "body_envelope(body, device_id, patient_json, earliest_us, latest_us, prefix, table, message_id_max,"
     " max_readings, head) -> (bytes, int) | None"},
    {"conversion_table", conversion_table, METH_O,
     "conversion_table(conversions) -> ConversionTable: checked for shape, copied, read-only"},
    {"message_id", message_id, METH_VARARGS,
     "message_id(prefix, metric, measured_at_us, value) -> the derived message id (text of a UUIDv5)"},
    {"columns", columns, METH_VARARGS,
     "columns(items, device_id, patient_id, earliest_us, latest_us, prefix, table, message_id_max) -> tuple | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "service._fastpath",
    .m_doc = "The gateway fast path's per-reading work, compiled.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    PyObject **keys[] = {&key_device_id, &key_patient_id, &key_message_id, &key_metric,
                         &key_value,     &key_unit,       &key_measured_at};
    const char *names[] = {"device_id", "patient_id", "message_id", "metric", "value", "unit", "measured_at"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*keys[i] == NULL && (*keys[i] = PyUnicode_InternFromString(names[i])) == NULL) {
            return NULL;
        }
    }
    if (PyType_Ready(&ConversionTableType) < 0) {
        return NULL;
    }
    PyObject *created = PyModule_Create(&module);
    if (created != NULL && PyModule_AddObjectRef(created, "ConversionTable", (PyObject *)&ConversionTableType) < 0) {
        Py_CLEAR(created);
    }
    return created;
}
