//! Failed authentications per source (docs/relay.md, "Who may read what, and TLS"): a source
//! (an IPv4 address, or an IPv6 /64) that fails `limit` times within a minute is refused with
//! `429` on every request that needs authentication until that minute is over; its tokens are not
//! even checked meanwhile, so guessing costs a minute per `limit` guesses. The table is bounded:
//! at most `MAX_SOURCES` sources, the stalest forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most sources remembered.
pub const MAX_SOURCES: usize = 4096;

/// Failed authentications per source.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    sources: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// The source a peer address counts as: IPv4 as is, IPv6 by its /64 (one host's share).
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(
            || {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            },
            IpAddr::V4,
        ),
    }
}

impl Throttle {
    /// At most `limit` failures a minute per source.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            sources: Mutex::default(),
        }
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (Instant, u32)>> {
        self.sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `ip` has used up its failures for this minute.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.sources()
            .get(&source(ip))
            .is_some_and(|&(since, n)| now.duration_since(since) < WINDOW && n >= self.limit)
    }

    /// Records a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut sources = self.sources();
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source(ip)) {
            sources.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
            if sources.len() >= MAX_SOURCES
                && let Some(stalest) = sources.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k)
            {
                sources.remove(&stalest);
            }
        }
        let entry = sources.entry(source(ip)).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_blocked_after_its_failures_and_others_are_not() {
        let throttle = Throttle::new(3);
        let first: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(!throttle.blocked(first));
            throttle.failed(first);
        }
        assert!(throttle.blocked(first));
        assert!(!throttle.blocked(other));
        // The same /64 is one source.
        let host: IpAddr = "2001:db8::1".parse().unwrap();
        let neighbour: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..3 {
            throttle.failed(host);
        }
        assert!(throttle.blocked(neighbour));
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = Throttle::new(1);
        for i in 0..(u32::try_from(MAX_SOURCES).unwrap() + 100) {
            throttle.failed(IpAddr::V4(std::net::Ipv4Addr::from(i)));
        }
        assert!(throttle.sources().len() <= MAX_SOURCES);
    }
}
