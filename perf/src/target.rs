//! Target parsing and the loopback guard.
//!
//! The generator can push hundreds of thousands of requests per second; pointed at the wrong
//! host it is a denial-of-service tool. It therefore refuses anything that does not resolve
//! exclusively to 127.0.0.0/8 or ::1.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, Result, bail};

/// A resolved, loopback-only HTTP target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The address connections are opened to.
    pub addr: SocketAddr,
    /// The value sent in the `Host` header.
    pub host_header: String,
}

/// Parses `http://HOST:PORT[/]` or `HOST:PORT` and refuses non-loopback addresses.
pub fn parse_target(spec: &str) -> Result<Target> {
    let rest = if let Some(r) = spec.strip_prefix("http://") {
        r
    } else if spec.contains("://") {
        bail!("only plain http:// targets are supported: {spec}");
    } else {
        spec
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        bail!("target must not carry a path: {spec}");
    }
    let addr = resolve_loopback(hostport)?;
    Ok(Target {
        addr,
        host_header: hostport.to_string(),
    })
}

/// Resolves `HOST:PORT` and returns the first address, refusing the target if any resolved
/// address is not loopback.
pub fn resolve_loopback(hostport: &str) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {hostport}"))?
        .collect();
    if addrs.is_empty() {
        bail!("{hostport} resolves to no address");
    }
    if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "refusing non-loopback target {hostport} ({bad}): only 127.0.0.0/8 and ::1 are allowed"
        );
    }
    Ok(addrs[0])
}

/// Checks every comma-separated `HOST:PORT` in a broker list (for `kafka-produce`).
pub fn check_brokers(brokers: &str) -> Result<()> {
    for b in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        resolve_loopback(b)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback() {
        assert_eq!(
            parse_target("http://127.0.0.1:8080").unwrap().addr.port(),
            8080
        );
        assert!(parse_target("127.1.2.3:9").is_ok());
        assert!(parse_target("http://[::1]:80/").is_ok());
    }

    #[test]
    fn refuses_others() {
        assert!(parse_target("http://10.0.0.1:80").is_err());
        assert!(parse_target("http://0.0.0.0:80").is_err());
        assert!(parse_target("https://127.0.0.1:443").is_err());
        assert!(parse_target("http://127.0.0.1:80/api").is_err());
        assert!(check_brokers("127.0.0.1:9092,192.168.1.1:9092").is_err());
    }
}
