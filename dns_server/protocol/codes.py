"""The DNS vocabulary, named once: record types, classes, rcodes, opcodes, header flags, EDNS, limits.

Every module that needs one of these numbers imports it from here, by the RFC's name.
"""

from __future__ import annotations

import struct

# Record types (RFC 1035 3.2.2, RFC 3596 2.1 AAAA, RFC 2782 SRV, RFC 6891 6.1.1 OPT, RFC 1995 IXFR)
A, NS, CNAME, SOA, PTR, HINFO, MX, TXT = 1, 2, 5, 6, 12, 13, 15, 16
AAAA = 28
SRV = 33
OPT = 41
IXFR, AXFR, ANY = 251, 252, 255  # query types only (RFC 1035 3.2.3)

# Classes (RFC 1035 3.2.4, 3.2.5); prefixed, as ANY is also a type
CLASS_IN, CLASS_CH, CLASS_ANY = 1, 3, 255

# Rcodes (RFC 1035 4.1.1); BADVERS is an extended rcode, its upper bits in the OPT record (RFC 6891 9)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16
# Their names as CoreDNS prints and reads them (miekg/dns RcodeToString): RFC 2136, RFC 8490, RFC 8945,
# RFC 2930, RFC 7873; 16 is BADSIG there, the name RFC 8945 gives the value BADVERS shares.
RCODE_NAMES: dict[int, str] = {
    NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL", NXDOMAIN: "NXDOMAIN", NOTIMP: "NOTIMP",
    REFUSED: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 11: "DSOTYPENI",
    16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC",
    23: "BADCOOKIE"}

# Opcodes (RFC 1035 4.1.1, RFC 1996 NOTIFY, RFC 2136 UPDATE)
OPCODE_QUERY, OPCODE_NOTIFY, OPCODE_UPDATE = 0, 4, 5

# Header flag bits, in the first and in the second flag byte (RFC 1035 4.1.1, RFC 4035 3.2 AD and CD)
QR, AA, TC, RD = 0x80, 0x04, 0x02, 0x01
RA, Z, AD, CD = 0x80, 0x40, 0x20, 0x10

# EDNS (RFC 6891 6.1.2): the OPT record as written, owner name the root; DO is in its flags (RFC 3225 3)
OPT_RECORD = struct.Struct("!BHHBBHH")  # root name, type, UDP size, extended rcode, version, flags, RDLENGTH
OPT_PREFIX = OPT_RECORD.pack(0, OPT, 0, 0, 0, 0, 0)[:3]  # the root name and type OPT
DO = 0x8000
EDNS_OPTION = struct.Struct("!HH")  # an option in the OPT record's RDATA: its code and length (RFC 6891 6.1.2)
NSID = 3  # the name server identifier option (RFC 5001)

# Sizes (RFC 1035 2.3.4, 4.2.1, 4.2.2)
MAX_LABEL = 63
MAX_NAME_LEN = 255  # a name in wire form, its length bytes and the root included
NO_EDNS_PAYLOAD = 512  # the UDP payload of a client without EDNS
MAX_TCP_MESSAGE = 65535  # the two-byte length prefix: no DNS message is longer
