//! Which addresses web_fetch may connect to. The decision is made on resolved IP addresses
//! (never on host names, which can resolve anywhere), before connecting, for the first
//! request and for every redirect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address is refused.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            // Addresses that embed an IPv4 address are judged by it.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            let seg = v6.segments();
            if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0; 4] {
                return v4_reason(Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                ));
            }
            if seg[0] == 0x2002 {
                return v4_reason(Ipv4Addr::new(
                    (seg[1] >> 8) as u8,
                    seg[1] as u8,
                    (seg[2] >> 8) as u8,
                    seg[2] as u8,
                ));
            }
            v6_reason(v6)
        }
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private network"
    } else if o[0] == 169 && o[1] == 254 {
        // 169.254.169.254 is the cloud metadata service; the whole range is link-local.
        "link-local or cloud metadata"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() || o[0] >= 240 {
        "reserved or broadcast"
    } else if o[0] == 0 {
        "unspecified (\"this network\")"
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        "shared address space (carrier-grade NAT)"
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        "IETF protocol assignments"
    } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
        "benchmarking network"
    } else if ip.is_documentation() {
        "documentation range"
    } else {
        return None;
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_unicast_link_local() {
        "link-local"
    } else if ip.is_unique_local() {
        // fc00::/7, which includes fd00:ec2::254, the AWS metadata service over IPv6.
        "private network (unique local)"
    } else if seg[0] == 0x2001 && seg[1] == 0xdb8 {
        "documentation range"
    } else if (seg[0] & 0xffc0) == 0xfec0 {
        "site-local"
    } else {
        return None;
    })
}

/// An origin entry: scheme, host as written in the URL, port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

/// What the caller lets through despite the rules: exact IPs, IP:port pairs, host names or
/// origins (`http://127.0.0.1:8080`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    ips: Vec<IpAddr>,
    sockets: Vec<SocketAddr>,
    hosts: Vec<String>,
    origins: Vec<Origin>,
    only: bool,
}

impl AllowList {
    /// Adds an entry: `10.0.0.5`, `127.0.0.1:8080`, `[::1]:80`, a host name
    /// (`intranet.example`, which then may resolve to a private address) or an origin
    /// (`http://127.0.0.1:8080`: that scheme, host and port only).
    pub fn add(&mut self, entry: &str) {
        // Only with "://": `localhost:8080` would parse as a URL with scheme `localhost`.
        let origin = entry.contains("://").then(|| url::Url::parse(entry).ok());
        if let Some(Some(u)) = origin {
            if let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) {
                self.origins.push(Origin {
                    scheme: u.scheme().to_string(),
                    host: host.to_ascii_lowercase(),
                    port,
                });
            }
        } else if let Ok(sa) = entry.parse::<SocketAddr>() {
            self.sockets.push(sa);
        } else if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
            self.ips.push(ip);
        } else {
            self.hosts.push(entry.to_ascii_lowercase());
        }
    }

    /// Refuses everything but the entries, public addresses included; host names that are
    /// not entries are then refused before they are even resolved.
    pub fn only_listed(&mut self) {
        self.only = true;
    }

    /// Whether only the entries may be reached (see [`only_listed`](Self::only_listed)).
    pub fn is_exclusive(&self) -> bool {
        self.only
    }

    /// When only the entries may be reached: a regular expression (JSON Schema `pattern`
    /// syntax) matching exactly the http(s) URLs on them.
    pub fn url_pattern(&self) -> Option<String> {
        if !self.only {
            return None;
        }
        let any_port = "(:[0-9]{1,5})?";
        let web = |rest: String| format!("https?://{rest}");
        let mut origins: Vec<String> = self
            .sockets
            .iter()
            .map(|s| web(escape(&s.to_string())))
            .collect();
        for ip in &self.ips {
            let ip = match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            origins.push(web(format!("{}{any_port}", escape(&ip))));
        }
        origins.extend(
            self.hosts
                .iter()
                .map(|h| web(format!("{}{any_port}", escape(h)))),
        );
        for o in &self.origins {
            let default = url::Url::parse(&format!("{}://x", o.scheme))
                .ok()
                .and_then(|u| u.port_or_known_default());
            let port = match default == Some(o.port) {
                true => format!("(:{})?", o.port),
                false => format!(":{}", o.port),
            };
            origins.push(format!("{}://{}{port}", escape(&o.scheme), escape(&o.host)));
        }
        if origins.is_empty() {
            // Nothing may be reached; a pattern nothing matches says so.
            return Some("^$.".into());
        }
        Some(format!("^({})(/[^ \"\\\\]{{0,1000}})?$", origins.join("|")))
    }

    /// Whether `host` is an entry by name.
    pub fn lists_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Whether connecting to `addr` (for a URL naming `host`) is allowed by an entry.
    pub fn allows(&self, host: &str, addr: SocketAddr) -> bool {
        let origin = |o: &Origin| {
            o.port == addr.port()
                && (o.host.eq_ignore_ascii_case(host)
                    || o.host.trim_matches(['[', ']']).parse() == Ok(addr.ip()))
        };
        self.sockets.contains(&addr)
            || self.ips.contains(&addr.ip())
            || self.lists_host(host)
            || self.origins.iter().any(origin)
    }
}

/// `text` with regular-expression metacharacters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The decision for one resolved address: `Ok` to connect, or the reason not to.
pub fn decide(host: &str, addr: SocketAddr, allow: &AllowList) -> Result<(), String> {
    match forbidden_reason(addr.ip()) {
        _ if allow.allows(host, addr) => Ok(()),
        _ if allow.only => Err(format!(
            "refusing to connect to {addr} for host `{host}`: only allow-listed destinations \
             may be reached"
        )),
        Some(reason) => Err(format!(
            "refusing to connect to {addr} ({reason}) for host `{host}`; allow-list it to permit"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        forbidden_reason(s.parse().unwrap()).is_some()
    }

    #[test]
    fn private_link_local_metadata_and_friends_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2002:808:808::",
        ] {
            assert!(!refused(ip), "{ip} is public");
        }
    }

    #[test]
    fn allow_list_entries() {
        let mut allow = AllowList::default();
        allow.add("127.0.0.1:8080");
        allow.add("10.1.2.3");
        allow.add("Intranet.Test");
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(decide("x", sa("127.0.0.1:8080"), &allow).is_ok());
        assert!(decide("x", sa("127.0.0.1:8081"), &allow).is_err());
        assert!(decide("x", sa("10.1.2.3:443"), &allow).is_ok());
        assert!(decide("intranet.test", sa("10.9.9.9:80"), &allow).is_ok());
        assert!(decide("other.test", sa("10.9.9.9:80"), &allow).is_err());
        assert!(decide("public.test", sa("93.184.216.34:80"), &AllowList::default()).is_ok());
        allow.only_listed();
        assert!(decide("public.test", sa("93.184.216.34:80"), &allow).is_err());
        assert!(decide("x", sa("127.0.0.1:8081"), &allow).is_err());
        assert!(decide("x", sa("127.0.0.1:8080"), &allow).is_ok());
        assert!(decide("intranet.test", sa("10.9.9.9:80"), &allow).is_ok());
    }
}
