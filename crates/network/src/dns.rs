//! DNS messages, as much as the embedded resolver needs (RFC 1035 §4): read the question of a
//! query, and write an answer with A records, an empty answer, or an error code. Anything
//! else is forwarded untouched.

use std::net::Ipv4Addr;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;
pub const NXDOMAIN: u8 = 3;
pub const SERVFAIL: u8 = 2;

/// The first question of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The end of the question section in the packet.
    question_end: usize,
}

/// Parses a standard query with one question; None for anything else.
pub fn parse_query(p: &[u8]) -> Option<Query> {
    if p.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([p[2], p[3]]);
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([p[4], p[5]]);
    if qr || opcode != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *p.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        let l = p.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(l).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*p.get(i + 2)?, *p.get(i + 3)?]);
    Some(Query { id: u16::from_be_bytes([p[0], p[1]]), name: labels.join("."), qtype, qclass, question_end: i + 4 })
}

fn header(q: &Query, query: &[u8], rcode: u8, ancount: u16) -> Vec<u8> {
    let rd = query[2] & 0x01;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, authoritative, RD copied, RA set.
    out.push(0x84 | rd);
    out.push(0x80 | (rcode & 0xf));
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ancount.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..q.question_end]);
    out
}

/// An answer with one A record per address (none: an empty NOERROR answer).
pub fn answer(q: &Query, query: &[u8], addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let mut out = header(q, query, 0, addrs.len() as u16);
    for a in addrs {
        // A pointer to the name in the question (offset 12).
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&a.octets());
    }
    out
}

/// An answer carrying only an error code (NXDOMAIN, SERVFAIL).
pub fn error(q: &Query, query: &[u8], rcode: u8) -> Vec<u8> {
    header(q, query, rcode, 0)
}

/// A query for `name` (for tests and clients).
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.trim_end_matches('.').split('.') {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// The A records of an answer (for tests).
pub fn answer_addrs(p: &[u8]) -> Option<(u8, Vec<Ipv4Addr>)> {
    let q = parse_question_of_answer(p)?;
    let rcode = p[3] & 0xf;
    let ancount = u16::from_be_bytes([p[6], p[7]]);
    let mut i = q;
    let mut out = Vec::new();
    for _ in 0..ancount {
        // Name: a pointer or labels.
        loop {
            let b = *p.get(i)?;
            if b & 0xc0 == 0xc0 {
                i += 2;
                break;
            }
            i += 1 + b as usize;
            if b == 0 {
                break;
            }
        }
        let t = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]);
        let len = u16::from_be_bytes([*p.get(i + 8)?, *p.get(i + 9)?]) as usize;
        i += 10;
        let data = p.get(i..i + len)?;
        if t == TYPE_A && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += len;
    }
    Some((rcode, out))
}

fn parse_question_of_answer(p: &[u8]) -> Option<usize> {
    if p.len() < 12 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = *p.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        i += len;
    }
    Some(i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_answer_round_trip() {
        let q = build_query(7, "Web.", TYPE_A);
        let parsed = parse_query(&q).expect("parse");
        assert_eq!(parsed.name, "web");
        assert_eq!(parsed.qtype, TYPE_A);
        let a = answer(&parsed, &q, &[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)], 600);
        assert_eq!(&a[..2], &7u16.to_be_bytes());
        assert_eq!(answer_addrs(&a), Some((0, vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)])));
        let e = error(&parsed, &q, NXDOMAIN);
        assert_eq!(answer_addrs(&e), Some((NXDOMAIN, vec![])));
        assert!(parse_query(&a).is_none(), "an answer is not a query");
        assert!(parse_query(&q[..10]).is_none());
    }
}
