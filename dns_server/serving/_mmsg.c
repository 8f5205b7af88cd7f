/* Many UDP datagrams per system call: recvmmsg(2) and sendmmsg(2) for the UDP listener (udp.py).
 *
 * The only compiled part of the server, and an optional one: udp.py falls back to socket.recvfrom and
 * socket.sendto, one system call per datagram, when this module was not built (no compiler at
 * install, or a system without these calls) or DNS_SERVER_PURE_PYTHON=1.  Both paths give the same
 * bytes to the same addresses; only the number of system calls differs.
 *
 * Addresses are the tuples socket.recvfrom returns and socket.sendto takes: (host, port) for IPv4,
 * (host, port, flowinfo, scope_id) for IPv6, the host as inet_ntop writes it.
 *
 * The GIL is held throughout.  The calls never block (MSG_DONTWAIT), so releasing it would buy
 * nothing, and holding it means the static buffers below are never used by two threads at once.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_BATCH 64
/* The largest DNS message: a datagram is always read whole, as udp.py's fallback reads it (a cut
 * one could parse as a different, shorter query).  Pages are touched only as far as datagrams
 * reach, so the 4 MB cost address space, not memory. */
#define MAX_MESSAGE 65535

static char buffers[MAX_BATCH][MAX_MESSAGE];
static struct sockaddr_storage addresses[MAX_BATCH];
static struct iovec vectors[MAX_BATCH];
static struct mmsghdr headers[MAX_BATCH];

static PyObject *
address_tuple(const struct sockaddr_storage *address)
{
    char host[INET6_ADDRSTRLEN];
    if (address->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, ntohs(v4->sin_port));
    }
    if (address->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
        return Py_BuildValue("(siII)", host, ntohs(v6->sin6_port), ntohl(v6->sin6_flowinfo),
                             v6->sin6_scope_id);
    }
    PyErr_Format(PyExc_OSError, "datagram from address family %d", address->ss_family);
    return NULL;
}

/* Fill `out` from a (host, port[, flowinfo, scope_id]) tuple; 0 when it is not one. */
static socklen_t
parse_address(PyObject *tuple, struct sockaddr_storage *out)
{
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) < 2)
        return 0;
    const char *host = PyUnicode_Check(PyTuple_GET_ITEM(tuple, 0)) ? PyUnicode_AsUTF8(PyTuple_GET_ITEM(tuple, 0)) : NULL;
    long port = host != NULL && PyLong_Check(PyTuple_GET_ITEM(tuple, 1)) ? PyLong_AsLong(PyTuple_GET_ITEM(tuple, 1)) : -1;
    if (host == NULL || port < 0 || port > 65535) {
        PyErr_Clear();
        return 0;
    }
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return sizeof *v4;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        if (PyTuple_GET_SIZE(tuple) >= 4) {
            v6->sin6_flowinfo = htonl((uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(tuple, 2)));
            v6->sin6_scope_id = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(tuple, 3));
            if (PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
        }
        return sizeof *v6;
    }
    return 0;
}

PyDoc_STRVAR(receive_doc,
"receive(fd, limit) -> list of (data, address)\n\n"
"The datagrams waiting on the socket, at most `limit` (at most 64) of them, in one recvmmsg call;\n"
"[] when none is waiting.  Raises OSError for any other error.");

static PyObject *
mmsg_receive(PyObject *module, PyObject *args)
{
    int fd, limit;
    if (!PyArg_ParseTuple(args, "ii:receive", &fd, &limit))
        return NULL;
    if (limit < 1 || limit > MAX_BATCH) {
        PyErr_Format(PyExc_ValueError, "limit must be from 1 to %d", MAX_BATCH);
        return NULL;
    }
    for (int i = 0; i < limit; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = MAX_MESSAGE;
        memset(&headers[i], 0, sizeof headers[i]);
        headers[i].msg_hdr.msg_iov = &vectors[i];
        headers[i].msg_hdr.msg_iovlen = 1;
        headers[i].msg_hdr.msg_name = &addresses[i];
        headers[i].msg_hdr.msg_namelen = sizeof addresses[i];
    }
    int received;
    do {
        received = recvmmsg(fd, headers, (unsigned int)limit, MSG_DONTWAIT, NULL);
    } while (received < 0 && errno == EINTR);
    if (received < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return PyList_New(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *datagrams = PyList_New(received);
    if (datagrams == NULL)
        return NULL;
    for (int i = 0; i < received; i++) {
        PyObject *data = PyBytes_FromStringAndSize(buffers[i], headers[i].msg_len);
        PyObject *address = data ? address_tuple(&addresses[i]) : NULL;
        PyObject *pair = address ? PyTuple_Pack(2, data, address) : NULL;
        Py_XDECREF(data);
        Py_XDECREF(address);
        if (pair == NULL) {
            Py_DECREF(datagrams);
            return NULL;
        }
        PyList_SET_ITEM(datagrams, i, pair);
    }
    return datagrams;
}

PyDoc_STRVAR(send_doc,
"send(fd, replies) -> int\n\n"
"Send each (data, address) of the list `replies` (at most 64) with sendmmsg; returns how many the\n"
"kernel took.  A datagram it refuses (a full send queue, an address it cannot reach) or whose\n"
"address is not one is dropped, as UDP drops it, and the rest are still sent.");

static PyObject *
mmsg_send(PyObject *module, PyObject *args)
{
    int fd;
    PyObject *replies;
    if (!PyArg_ParseTuple(args, "iO!:send", &fd, &PyList_Type, &replies))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(replies);
    if (count > MAX_BATCH) {
        PyErr_Format(PyExc_ValueError, "at most %d replies at a time", MAX_BATCH);
        return NULL;
    }
    unsigned int ready = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *reply = PyList_GET_ITEM(replies, i);
        if (!PyTuple_Check(reply) || PyTuple_GET_SIZE(reply) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(reply, 0)))
            continue;
        socklen_t length = parse_address(PyTuple_GET_ITEM(reply, 1), &addresses[ready]);
        if (length == 0)
            continue;
        PyObject *data = PyTuple_GET_ITEM(reply, 0);
        vectors[ready].iov_base = PyBytes_AS_STRING(data);
        vectors[ready].iov_len = (size_t)PyBytes_GET_SIZE(data);
        memset(&headers[ready], 0, sizeof headers[ready]);
        headers[ready].msg_hdr.msg_iov = &vectors[ready];
        headers[ready].msg_hdr.msg_iovlen = 1;
        headers[ready].msg_hdr.msg_name = &addresses[ready];
        headers[ready].msg_hdr.msg_namelen = length;
        ready++;
    }
    long taken = 0;
    unsigned int next = 0;
    while (next < ready) {
        int sent = sendmmsg(fd, headers + next, ready - next, MSG_DONTWAIT);
        if (sent < 0) {
            if (errno != EINTR)
                next++; /* the kernel refused this one: drop it, go on with the rest */
            continue;
        }
        next += (unsigned int)sent;
        taken += sent;
    }
    return PyLong_FromLong(taken);
}

static PyMethodDef methods[] = {
    {"receive", mmsg_receive, METH_VARARGS, receive_doc},
    {"send", mmsg_send, METH_VARARGS, send_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "dns_server.serving._mmsg",
    .m_doc = "recvmmsg and sendmmsg for the UDP listener: many datagrams per system call.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__mmsg(void)
{
    PyObject *created = PyModule_Create(&module);
    if (created != NULL && PyModule_AddIntConstant(created, "MAX_BATCH", MAX_BATCH) < 0) {
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
