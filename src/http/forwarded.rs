//! Behind a reverse proxy: which proxies are trusted (`--trusted-proxy CIDR`) and what a
//! trusted one says about the request — the client's address (RFC 7239 `Forwarded: for=`, else
//! `X-Forwarded-For`), the scheme and the host the browser used (`proto=`/`host=`, else
//! `X-Forwarded-Proto`/`-Host`). Pure: header values in, a [`Client`] out; no I/O.
//!
//! The address is found by the usual safe walk: the hops a header lists are read from the
//! right (the entry the nearest proxy wrote) to the left, skipping every address that is itself
//! a trusted proxy; the first one that is not is the client. Whatever is further left was
//! written by someone we do not trust (the client can send any header it likes) and is never
//! read. A hop that names no address (`unknown`, an obfuscated `_name`, anything unreadable)
//! stops the walk: the client is then the last trusted hop seen, since nothing to its left can
//! be believed. With every hop trusted, the left-most one is the client.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An address block, `ADDR/BITS`: `10.0.0.0/8`, `2001:db8::/32`; a bare address is one host
/// (`/32`, `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `ADDR[/BITS]` (IPv6 optionally in brackets). Bits beyond the prefix must be
    /// zero (`10.0.0.1/8` is refused, naming `10.0.0.0/8`), so a typo cannot widen the block
    /// silently. An IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) is its IPv4 block.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let bare = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let ip: IpAddr = bare
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or ADDRESS/BITS"))?;
        if bare.len() != addr.len() && ip.is_ipv4() {
            return Err(format!("'{s}': brackets are for IPv6 addresses only"));
        }
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) if !b.is_empty() && b.len() <= 3 && b.bytes().all(|c| c.is_ascii_digit()) => {
                match b.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(format!("'{s}': the prefix length must be 0-{max}")),
                }
            }
            Some(_) => return Err(format!("'{s}': the prefix length must be 0-{max}")),
        };
        let cidr = Cidr { net: ip, bits };
        let masked = mask(ip, bits);
        if masked != ip {
            return Err(format!(
                "'{s}' has bits set beyond the /{bits} prefix: did you mean {}/{bits}?",
                masked
            ));
        }
        // `::ffff:a.b.c.d/N` (N ≥ 96) is the IPv4 block a.b.c.d/(N − 96): peers are compared
        // as IPv4 once canonical.
        if let IpAddr::V6(v6) = ip {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), bits >= 96) {
                return Ok(Cidr {
                    net: IpAddr::V4(v4),
                    bits: bits - 96,
                });
            }
        }
        Ok(cidr)
    }

    /// Is `ip` inside this block? (An IPv4-mapped IPv6 address counts as its IPv4 address.)
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.bits) == self.net
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

/// `ip` with every bit beyond the first `bits` cleared.
fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// Is `ip` inside one of `proxies`?
pub fn trusted(proxies: &[Cidr], ip: IpAddr) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// The scheme a trusted proxy says the browser used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http,
    Https,
}

impl Proto {
    /// `http` or `https`, any case; anything else is no scheme we know (ignored).
    fn parse(s: &str) -> Option<Proto> {
        if s.eq_ignore_ascii_case("http") {
            Some(Proto::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Proto::Https)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Https => "https",
        }
    }
}

/// The forwarding headers of one request, each field's values in the order they came.
#[derive(Clone, Debug, Default)]
pub struct Headers<'a> {
    pub forwarded: Vec<&'a str>,
    pub x_forwarded_for: Vec<&'a str>,
    pub x_forwarded_proto: Vec<&'a str>,
    pub x_forwarded_host: Vec<&'a str>,
}

/// Who the request is from, as far as the trusted proxies tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client's address (the TCP peer's when no trusted proxy said otherwise).
    pub ip: IpAddr,
    /// The scheme the browser used, when a trusted proxy said so.
    pub proto: Option<Proto>,
    /// The `Host` the browser used (`uri-host[:port]`, unchecked here), when a trusted proxy
    /// said so.
    pub host: Option<String>,
}

impl Client {
    /// A request straight from `peer`: nothing forwarded.
    pub fn direct(peer: IpAddr) -> Client {
        Client {
            ip: peer.to_canonical(),
            proto: None,
            host: None,
        }
    }
}

/// One hop a forwarding header lists.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Hop {
    /// An address (a port, if any, dropped).
    Addr(IpAddr),
    /// `unknown`, an obfuscated identifier, or something unreadable: no address.
    Opaque,
}

/// One element of a `Forwarded` header: its `for=` hop (None when it has none) and its
/// `proto=` and `host=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Element {
    node: Option<NodeKind>,
    proto: Option<String>,
    host: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeKind {
    Addr(IpAddr),
    Opaque,
}

/// What a request from `peer` is, given `proxies` and its headers: the peer itself unless it
/// is a trusted proxy; then the client `Forwarded` names (when any of its elements has a
/// `for=`), else the one `X-Forwarded-For` names, by the walk described in the module doc.
pub fn resolve(peer: IpAddr, proxies: &[Cidr], h: &Headers) -> Client {
    let mut client = Client::direct(peer);
    if !trusted(proxies, client.ip) {
        return client;
    }
    let elements = forwarded_elements(&h.forwarded);
    let (proto, host);
    if elements.iter().any(|e| e.node.is_some()) {
        // Only the elements that name a hop are hops; the walk stops at the element that
        // names the client (or at the last one it can believe), and that element's proto=
        // and host= were written by a trusted proxy.
        let hops: Vec<&Element> = elements.iter().filter(|e| e.node.is_some()).collect();
        let mut chosen = None;
        for e in hops.iter().rev() {
            match e.node {
                Some(NodeKind::Addr(ip)) => {
                    let ip = ip.to_canonical();
                    client.ip = ip;
                    chosen = Some(*e);
                    if !trusted(proxies, ip) {
                        break;
                    }
                }
                // No address here, and nothing to the left can be believed: the client is the
                // last trusted hop; its element (if any) still tells the scheme and the host.
                _ => {
                    if chosen.is_none() {
                        chosen = Some(*e);
                    }
                    break;
                }
            }
        }
        proto = chosen.and_then(|e| e.proto.clone());
        host = chosen.and_then(|e| e.host.clone());
    } else {
        for hop in list_hops(&h.x_forwarded_for).iter().rev() {
            match hop {
                Hop::Addr(ip) => {
                    client.ip = ip.to_canonical();
                    if !trusted(proxies, client.ip) {
                        break;
                    }
                }
                Hop::Opaque => break,
            }
        }
        proto = None;
        host = None;
    }
    let first = |values: &[&str]| -> Option<String> {
        let v = values.first()?.split(',').next()?.trim();
        (!v.is_empty()).then(|| v.to_string())
    };
    client.proto = proto
        .or_else(|| first(&h.x_forwarded_proto))
        .and_then(|p| Proto::parse(&p));
    client.host = host.or_else(|| first(&h.x_forwarded_host));
    client
}

/// The hops of `X-Forwarded-For` fields, left to right: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]:80`; anything else (`unknown`, an empty item) is [`Hop::Opaque`].
fn list_hops(fields: &[&str]) -> Vec<Hop> {
    fields
        .iter()
        .flat_map(|f| f.split(','))
        .map(|item| match node_addr(item.trim()) {
            Some(ip) => Hop::Addr(ip),
            None => Hop::Opaque,
        })
        .collect()
}

/// An address with or without a port: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`.
fn node_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The elements of `Forwarded` fields (RFC 7239 §4), left to right. A field that does not
/// follow the grammar becomes one element with an opaque hop where it stood: what it says
/// cannot be believed, and a walk from the right stops there.
fn forwarded_elements(fields: &[&str]) -> Vec<Element> {
    let mut out = Vec::new();
    for field in fields {
        match parse_forwarded(field) {
            Some(elements) => out.extend(elements),
            None => out.push(Element {
                node: Some(NodeKind::Opaque),
                ..Element::default()
            }),
        }
    }
    out
}

/// One `Forwarded` field value: `forwarded-element *( OWS "," OWS forwarded-element )`, each
/// `forwarded-pair *( ";" forwarded-pair )`, a pair `token "=" ( token / quoted-string )`.
/// Empty list items are allowed (RFC 9110 §5.6.1). None when it does not parse.
fn parse_forwarded(field: &str) -> Option<Vec<Element>> {
    let b = field.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let mut e = Element::default();
    let mut pairs = 0;
    let skip_ows = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ows(&mut i);
        if i == b.len() {
            break;
        }
        if b[i] == b',' {
            // An empty list item, or the end of an element.
            if pairs > 0 {
                out.push(std::mem::take(&mut e));
                pairs = 0;
            }
            i += 1;
            continue;
        }
        if pairs > 0 {
            // Between pairs of one element: `;` (no whitespace allowed around it by the
            // grammar, tolerated here as most parsers do).
            if b[i] != b';' {
                return None;
            }
            i += 1;
            skip_ows(&mut i);
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start || i == b.len() || b[i] != b'=' {
            return None;
        }
        let name = &field[start..i];
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            loop {
                match b.get(i)? {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        // quoted-pair; only ASCII is taken escaped (an escaped UTF-8 lead
                        // byte would split its character).
                        let c = *b.get(i + 1)?;
                        if !(c == b'\t' || (0x20..0x7f).contains(&c)) {
                            return None;
                        }
                        v.push(c as char);
                        i += 2;
                    }
                    &c if c == b'\t' || (0x20..0x7f).contains(&c) || c >= 0x80 => {
                        // Copy one whole UTF-8 character (the field is a &str).
                        let ch = field[i..].chars().next()?;
                        v.push(ch);
                        i += ch.len_utf8();
                    }
                    _ => return None,
                }
            }
            v
        } else {
            let vs = i;
            while i < b.len() && is_tchar(b[i]) {
                i += 1;
            }
            if i == vs {
                return None;
            }
            field[vs..i].to_string()
        };
        pairs += 1;
        // RFC 7239 §4: each parameter at most once per element.
        if name.eq_ignore_ascii_case("for") {
            if e.node.is_some() {
                return None;
            }
            e.node = Some(match node_addr_7239(&value) {
                Some(ip) => NodeKind::Addr(ip),
                None => NodeKind::Opaque,
            });
        } else if name.eq_ignore_ascii_case("proto") {
            if e.proto.is_some() {
                return None;
            }
            e.proto = Some(value);
        } else if name.eq_ignore_ascii_case("host") {
            if e.host.is_some() {
                return None;
            }
            e.host = Some(value);
        }
    }
    if pairs > 0 {
        out.push(e);
    }
    Some(out)
}

/// A `node` of RFC 7239 §6: `IPv4[:port]` or `"[IPv6]"[:port]` (the port a number or an
/// obfuscated `_name`); `unknown` and obfuscated names (`_hidden`) are no address.
fn node_addr_7239(v: &str) -> Option<IpAddr> {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip = inside.parse::<Ipv6Addr>().ok()?;
        (IpAddr::V6(ip), after)
    } else {
        let (h, p) = v.split_at(v.find(':').unwrap_or(v.len()));
        (IpAddr::V4(h.parse::<Ipv4Addr>().ok()?), p)
    };
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(p) => {
            (!p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
                || (p.len() > 1
                    && p.starts_with('_')
                    && p[1..]
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-'))
        }
    };
    port_ok.then_some(host)
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    #[test]
    fn cidrs_parse_ipv4_ipv6_and_bare_addresses() {
        for (text, shown) in [
            ("127.0.0.1", "127.0.0.1/32"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1", "::1/128"),
            ("[::1]", "::1/128"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("[2001:db8::]/32", "2001:db8::/32"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:127.0.0.1", "127.0.0.1/32"),
        ] {
            assert_eq!(Cidr::parse(text).unwrap().to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0.0/0008",
            "10.0.0.1/8",
            "2001:db8::1/32",
            "[10.0.0.1]",
            "localhost",
            " 10.0.0.1",
            "10.0.0.0/8/8",
            "010.0.0.1",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
        let e = Cidr::parse("192.168.1.7/24").unwrap_err();
        assert!(e.contains("did you mean 192.168.1.0/24?"), "{e}");
    }

    #[test]
    fn cidrs_contain_their_block_only() {
        let c = cidrs(&["10.0.0.0/8", "2001:db8::/32", "192.168.1.5", "::1"]);
        for (addr, want) in [
            ("10.1.2.3", true),
            ("11.0.0.0", false),
            ("192.168.1.5", true),
            ("192.168.1.6", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::1", false),
            ("::1", true),
            ("::2", false),
            // An IPv4 peer seen on a dual-stack socket.
            ("::ffff:10.9.9.9", true),
            ("::ffff:11.0.0.1", false),
        ] {
            assert_eq!(trusted(&c, ip(addr)), want, "{addr}");
        }
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::2")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001::1")));
    }

    fn xff(peer: &str, proxies: &[&str], values: &[&str]) -> IpAddr {
        let h = Headers {
            x_forwarded_for: values.to_vec(),
            ..Headers::default()
        };
        resolve(ip(peer), &cidrs(proxies), &h).ip
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right_past_trusted_proxies_only() {
        let p = ["127.0.0.1", "10.0.0.0/8"];
        for (peer, values, want) in [
            // Untrusted peer: the header is ignored, whatever it says.
            ("203.0.113.9", &["1.1.1.1"][..], "203.0.113.9"),
            // Trusted peer, one hop.
            ("127.0.0.1", &["198.51.100.7"], "198.51.100.7"),
            // A client's own claim to the left of the real address is never reached.
            ("127.0.0.1", &["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
            ("127.0.0.1", &["6.6.6.6", "198.51.100.7"], "198.51.100.7"),
            // Two trusted proxies in a row are skipped.
            (
                "127.0.0.1",
                &["6.6.6.6, 198.51.100.7, 10.0.0.2"],
                "198.51.100.7",
            ),
            // Ports and IPv6, bracketed or not.
            ("127.0.0.1", &["198.51.100.7:4711"], "198.51.100.7"),
            ("127.0.0.1", &["[2001:db8::1]:4711"], "2001:db8::1"),
            ("127.0.0.1", &["2001:db8::1"], "2001:db8::1"),
            // `unknown` or garbage right of every real address: the last trusted hop.
            ("127.0.0.1", &["198.51.100.7, unknown"], "127.0.0.1"),
            ("127.0.0.1", &["198.51.100.7, bogus, 10.0.0.3"], "10.0.0.3"),
            ("127.0.0.1", &["198.51.100.7, 10.0.0.3, bogus"], "127.0.0.1"),
            ("127.0.0.1", &[""], "127.0.0.1"),
            // Every hop trusted: the left-most.
            ("127.0.0.1", &["10.0.0.4, 10.0.0.5"], "10.0.0.4"),
            // No header at all.
            ("127.0.0.1", &[], "127.0.0.1"),
        ] {
            assert_eq!(xff(peer, &p, values), ip(want), "{peer} {values:?}");
        }
        // With no trusted proxy, nothing is read.
        assert_eq!(xff("127.0.0.1", &[], &["1.2.3.4"]), ip("127.0.0.1"));
    }

    fn fwd(peer: &str, proxies: &[&str], h: Headers) -> Client {
        resolve(ip(peer), &cidrs(proxies), &h)
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_carries_proto_and_host() {
        let h = Headers {
            forwarded: vec!["for=192.0.2.60;proto=https;host=vote.example, for=10.0.0.2"],
            x_forwarded_for: vec!["7.7.7.7"],
            x_forwarded_proto: vec!["http"],
            x_forwarded_host: vec!["elsewhere"],
        };
        let c = fwd("127.0.0.1", &["127.0.0.1", "10.0.0.0/8"], h);
        assert_eq!(c.ip, ip("192.0.2.60"));
        assert_eq!(c.proto, Some(Proto::Https));
        assert_eq!(c.host.as_deref(), Some("vote.example"));

        for (value, want) in [
            ("for=\"[2001:db8::1]:4711\"", "2001:db8::1"),
            ("For=\"[2001:db8::1]\"", "2001:db8::1"),
            ("for=\"192.0.2.43:47011\"", "192.0.2.43"),
            ("for=\"192.0.2.43:_abc\"", "192.0.2.43"),
            ("for=192.0.2.43, for=198.51.100.17", "198.51.100.17"),
            (
                "for=192.0.2.43,for=\"[2001:db8:cafe::17]\"",
                "2001:db8:cafe::17",
            ),
            // Obfuscated and unknown hops: no address; the last trusted one stands.
            ("for=_hidden", "127.0.0.1"),
            ("for=unknown", "127.0.0.1"),
            ("for=192.0.2.43, for=unknown", "127.0.0.1"),
            (
                "for=192.0.2.43;by=_x, for=10.0.0.9, for=_gateway",
                "127.0.0.1",
            ),
            ("for=192.0.2.43, for=10.0.0.9", "192.0.2.43"),
            // Not the grammar: nothing believed.
            ("for=\"[2001:db8::1]", "127.0.0.1"),
            ("for=1.2.3.4;for=5.6.7.8", "127.0.0.1"),
            ("for", "127.0.0.1"),
            ("for=1.2.3.4 junk", "127.0.0.1"),
            // A port needs quotes (':' is no token character).
            ("for=192.0.2.43:47011", "127.0.0.1"),
            // An IPv6 address must be quoted and bracketed.
            ("for=[2001:db8::1]", "127.0.0.1"),
            ("for=\"2001:db8::1\"", "127.0.0.1"),
            ("for=\"[2001:db8::1]:x\"", "127.0.0.1"),
        ] {
            let h = Headers {
                forwarded: vec![value],
                ..Headers::default()
            };
            assert_eq!(
                fwd("127.0.0.1", &["127.0.0.1", "10.0.0.0/8"], h).ip,
                ip(want),
                "{value}"
            );
        }
        // A malformed field the client sent, then the proxy's own field: the proxy's counts.
        let h = Headers {
            forwarded: vec!["for=\"unterminated", "for=198.51.100.1"],
            ..Headers::default()
        };
        assert_eq!(fwd("127.0.0.1", &["127.0.0.1"], h).ip, ip("198.51.100.1"));
        // Forwarded without any for=: the address comes from X-Forwarded-For.
        let h = Headers {
            forwarded: vec!["proto=https"],
            x_forwarded_for: vec!["198.51.100.2"],
            ..Headers::default()
        };
        assert_eq!(fwd("127.0.0.1", &["127.0.0.1"], h).ip, ip("198.51.100.2"));
    }

    #[test]
    fn an_untrusted_peer_forwards_nothing() {
        let h = Headers {
            forwarded: vec!["for=1.1.1.1;proto=https;host=x"],
            x_forwarded_for: vec!["2.2.2.2"],
            x_forwarded_proto: vec!["https"],
            x_forwarded_host: vec!["y"],
        };
        assert_eq!(
            fwd("192.0.2.1", &["127.0.0.1"], h),
            Client::direct(ip("192.0.2.1"))
        );
    }

    #[test]
    fn proto_and_host_from_the_x_forwarded_headers() {
        let h = Headers {
            x_forwarded_for: vec!["198.51.100.7"],
            x_forwarded_proto: vec!["HTTPS, http"],
            x_forwarded_host: vec![" vote.example:8443 "],
            ..Headers::default()
        };
        let c = fwd("::1", &["::1"], h);
        assert_eq!(c.proto, Some(Proto::Https));
        assert_eq!(c.host.as_deref(), Some("vote.example:8443"));
        let h = Headers {
            x_forwarded_proto: vec!["gopher"],
            ..Headers::default()
        };
        assert_eq!(
            fwd("::1", &["::1"], h).proto,
            None,
            "unknown schemes are ignored"
        );
    }

    #[test]
    fn forwarded_quoted_strings_and_list_syntax() {
        let e = parse_forwarded(" , for=1.2.3.4 ;proto=\"ht\\tp\" ,,host=\"a\\\"b\"").unwrap();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0].proto.as_deref(),
            Some("http"),
            "a quoted-pair is the character"
        );
        assert_eq!(e[1].host.as_deref(), Some("a\"b"));
        assert_eq!(e[1].node, None);
        assert!(parse_forwarded("for=\"é\"").is_some());
        assert!(parse_forwarded("for=\"a\\").is_none());
        assert!(parse_forwarded("=x").is_none());
        assert!(parse_forwarded("for=").is_none());
        assert_eq!(parse_forwarded("").unwrap(), vec![]);
    }
}
