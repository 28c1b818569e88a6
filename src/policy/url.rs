//! The `redis.url` forms busyguard accepts, parsed on their own.

use std::path::PathBuf;

use super::Endpoint;

/// `redis://host[:port]`, `rediss://...`, `unix:///path`. Refuses credentials and a database
/// in the URL: secrets belong in files, and a busy script blocks every database alike.
pub fn parse_url(url: &str) -> Result<Endpoint, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("not a URL; write e.g. `redis://127.0.0.1:6379`".into());
    };
    if scheme == "unix" {
        if !rest.starts_with('/') {
            return Err(
                "a unix socket URL needs an absolute path: `unix:///run/redis/redis.sock`".into(),
            );
        }
        return Ok(Endpoint::Unix {
            path: PathBuf::from(rest),
        });
    }
    let tls = match scheme {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(format!(
                "scheme `{other}` is not supported; use redis://, rediss:// or unix://"
            ));
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(
            "credentials do not belong in the URL; use `redis.username` and `redis.password_file`"
                .into(),
        );
    }
    if !path.is_empty() && path != "0" {
        return Err("busyguard always uses database 0 (a busy script blocks every database); remove the path".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed `[` in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{p}` is not a port number"))?,
    };
    Ok(Endpoint::Tcp {
        host: host.to_string(),
        port,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("redis://127.0.0.1").unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 6379,
                tls: false
            }
        );
        assert_eq!(
            parse_url("rediss://[::1]:7000").unwrap(),
            Endpoint::Tcp {
                host: "::1".into(),
                port: 7000,
                tls: true
            }
        );
        assert_eq!(
            parse_url("unix:///run/redis.sock").unwrap(),
            Endpoint::Unix {
                path: "/run/redis.sock".into()
            }
        );
        assert!(parse_url("redis://:pw@host").is_err());
        assert!(parse_url("redis://host/3").is_err());
        assert!(parse_url("redis://host:99999").is_err());
    }
}
