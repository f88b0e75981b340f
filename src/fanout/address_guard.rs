//! Outbound address policy: subscriber URLs must not reach loopback, private, link-local or other
//! internal addresses (SSRF), checked on the addresses a name resolves to, at connection time.

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Which internal addresses are allowed anyway (`VODHOOK_ALLOW_PRIVATE_TARGETS`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum PrivateTargets {
    /// Only public addresses (the default).
    #[default]
    Refused,
    /// Everything, e.g. for subscribers on the same host or network.
    Allowed,
    /// Public addresses plus these networks.
    AllowedIn(Vec<IpNet>),
}

impl PrivateTargets {
    /// `true`/`false`, or a comma-separated list of CIDR networks (a bare address is a /32 or /128).
    pub fn parse(text: &str) -> Result<PrivateTargets, String> {
        match text.trim() {
            "" | "false" => Ok(PrivateTargets::Refused),
            "true" => Ok(PrivateTargets::Allowed),
            list => list
                .split(',')
                .map(|item| {
                    let item = item.trim();
                    item.parse::<IpNet>()
                        .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| format!("{item:?} is not a CIDR network such as 10.0.0.0/8"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(PrivateTargets::AllowedIn),
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        match self {
            PrivateTargets::Allowed => true,
            PrivateTargets::Refused => is_public(ip),
            PrivateTargets::AllowedIn(nets) => {
                is_public(ip) || nets.iter().any(|net| net.contains(&ip))
            }
        }
    }
}

/// Whether an address is on the public internet (not internal, reserved or special-purpose).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0                               // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b))  // benchmarking, 198.18.0.0/15
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)) // NAT64, may reach internal IPv4
}

/// A DNS resolver for reqwest that drops the addresses the policy refuses, so a name that points
/// inside (or is made to, between check and use) cannot be reached.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<PrivateTargets>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<PrivateTargets>) -> GuardedResolver {
        GuardedResolver { policy }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                let refused: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves only to internal addresses ({}); set VODHOOK_ALLOW_PRIVATE_TARGETS to allow them",
                    refused.join(", ")
                )
                .into());
            }
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let policy = PrivateTargets::Refused;
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!policy.permits(ip(internal)), "{internal}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(policy.permits(ip(public)), "{public}");
        }
    }

    #[test]
    fn allow_lists_open_exactly_their_networks() {
        let policy = PrivateTargets::parse("10.0.0.0/8, 127.0.0.1").expect("valid");
        assert!(policy.permits(ip("10.9.9.9")));
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(!policy.permits(ip("127.0.0.2")));
        assert!(!policy.permits(ip("192.168.0.1")));
        assert!(PrivateTargets::parse("true")
            .expect("valid")
            .permits(ip("192.168.0.1")));
        assert_eq!(PrivateTargets::parse("false"), Ok(PrivateTargets::Refused));
        assert!(PrivateTargets::parse("10.0.0.0/33").is_err());
        assert!(PrivateTargets::parse("intranet").is_err());
    }
}
