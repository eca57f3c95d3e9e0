//! `[broker]`: the per-connection limits of the broker the relay publishes to, AWS IoT Core's by
//! default (AWS IoT Core endpoints and quotas, "Message broker": 100 publish requests a second
//! per connection; 100 unacknowledged QoS 1 messages in flight per client, beyond which IoT Core
//! stops sending and may disconnect). The MQTT link (`mqtt.rs`) holds its QoS 1 publications to
//! `max_inflight` unacknowledged ones and paces every publish (deliveries, Jobs answers and
//! notifications alike) to `max_publishes_per_sec` (docs/relay.md, "Broker limits").

use std::time::{Duration, Instant};

use serde::Deserialize;

/// AWS IoT Core: publish requests a second per connection.
pub const IOT_CORE_PUBLISHES_PER_SEC: u32 = 100;
/// AWS IoT Core: unacknowledged QoS 1 messages in flight per connection.
pub const IOT_CORE_INFLIGHT: u16 = 100;

/// `[broker]` in the relay's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerLimits {
    /// Most publishes a second on the relay's connection (default 100, AWS IoT Core's); `0`
    /// lifts the limit (a local Mosquitto has none).
    #[serde(default = "publishes")]
    pub max_publishes_per_sec: u32,
    /// Most QoS 1 publications awaiting their `PUBACK` (default 100, AWS IoT Core's), 1 to
    /// 65,535.
    #[serde(default = "inflight")]
    pub max_inflight: u16,
}

fn publishes() -> u32 {
    IOT_CORE_PUBLISHES_PER_SEC
}

fn inflight() -> u16 {
    IOT_CORE_INFLIGHT
}

impl Default for BrokerLimits {
    fn default() -> Self {
        Self {
            max_publishes_per_sec: IOT_CORE_PUBLISHES_PER_SEC,
            max_inflight: IOT_CORE_INFLIGHT,
        }
    }
}

impl BrokerLimits {
    /// No publish limit, AWS IoT Core's in-flight window (benchmarks and local brokers).
    pub fn unlimited() -> Self {
        Self {
            max_publishes_per_sec: 0,
            ..Self::default()
        }
    }
}

/// Paces publishes to `per_sec` a second: a token bucket holding one second's worth, so a burst
/// never exceeds the limit in any one-second window by more than the bucket.
#[derive(Debug, Clone)]
pub struct PublishPace {
    per_sec: u32,
    /// Publishes the bucket holds, in millionths.
    tokens: u64,
    last: Option<Instant>,
}

impl PublishPace {
    /// A full bucket (`per_sec` 0: no limit).
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            tokens: u64::from(per_sec) * 1_000_000,
            last: None,
        }
    }

    /// Takes one publish at `now`: how long to wait before sending it (zero if it may go now).
    /// The caller sends it after that wait; the wait is already accounted for.
    pub fn take(&mut self, now: Instant) -> Duration {
        if self.per_sec == 0 {
            return Duration::ZERO;
        }
        let rate = u64::from(self.per_sec);
        let full = rate * 1_000_000;
        if let Some(last) = self.last {
            let micros =
                u64::try_from(now.saturating_duration_since(last).as_micros()).unwrap_or(u64::MAX);
            self.tokens = self
                .tokens
                .saturating_add(micros.saturating_mul(rate))
                .min(full);
        }
        self.last = Some(now);
        if self.tokens >= 1_000_000 {
            self.tokens -= 1_000_000;
            return Duration::ZERO;
        }
        // Wait until one token has come in, and spend it then.
        let missing = 1_000_000 - self.tokens;
        let wait = Duration::from_micros(missing.div_ceil(rate));
        self.tokens = 0;
        self.last = Some(now + wait);
        wait
    }
}

/// The relay's in-progress timeout (`[mqtt] jobs_in_progress_timeout_secs`): how long an
/// execution may stay IN_PROGRESS before the relay makes it `TIMED_OUT`, as AWS IoT Jobs'
/// `timeoutConfig.inProgressTimeoutInMinutes` does (1 minute to 7 days there; here in seconds,
/// 1 s to 7 days, so tests and demos can use a short one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct InProgressTimeout(u64);

impl InProgressTimeout {
    /// The longest: 10,080 minutes (AWS's limit).
    pub const MAX_SECS: u64 = 10_080 * 60;

    /// Its length in seconds.
    pub fn secs(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for InProgressTimeout {
    type Error = String;

    fn try_from(secs: u64) -> Result<Self, String> {
        if (1..=Self::MAX_SECS).contains(&secs) {
            Ok(Self(secs))
        } else {
            Err(format!(
                "jobs_in_progress_timeout_secs {secs} is not 1 to {} (7 days)",
                Self::MAX_SECS
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` publishes as fast as the pace allows, on a simulated clock: their send times.
    fn send(pace: &mut PublishPace, n: usize, start: Instant) -> Vec<Instant> {
        let mut now = start;
        (0..n)
            .map(|_| {
                now += pace.take(now);
                now
            })
            .collect()
    }

    #[test]
    fn no_one_second_window_holds_more_than_the_limit_and_a_burst() {
        let start = Instant::now();
        let mut pace = PublishPace::new(100);
        let times = send(&mut pace, 1000, start);
        // A full bucket goes at once, then one every 10 ms: 1,000 publishes take 9 s.
        assert_eq!(times[99], start);
        let total = times[999] - start;
        assert!(
            total >= Duration::from_millis(8_990) && total <= Duration::from_millis(9_010),
            "{total:?}"
        );
        // After the first burst, any one-second window holds at most 100 (+1 at its edge).
        for (i, t) in times.iter().enumerate().skip(100) {
            let within = times[i..]
                .iter()
                .take_while(|u| **u - *t < Duration::from_secs(1))
                .count();
            assert!(within <= 101, "{within} publishes in the second after #{i}");
        }
    }

    #[test]
    fn an_idle_connection_gets_a_full_bucket_back_and_no_more() {
        let start = Instant::now();
        let mut pace = PublishPace::new(100);
        send(&mut pace, 100, start);
        let later = start + Duration::from_secs(60);
        let times = send(&mut pace, 150, later);
        assert_eq!(times[99], later, "a minute idle refills one second's worth");
        assert!(times[100] > later, "and not more");
    }

    #[test]
    fn zero_means_no_limit_and_the_defaults_are_iot_core() {
        let mut pace = PublishPace::new(0);
        let start = Instant::now();
        assert_eq!(send(&mut pace, 10_000, start).last(), Some(&start));
        let d = BrokerLimits::default();
        assert_eq!((d.max_publishes_per_sec, d.max_inflight), (100, 100));
        let parsed: BrokerLimits = toml::from_str("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed, d);
        let parsed: BrokerLimits = toml::from_str("max_publishes_per_sec = 0\nmax_inflight = 20")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((parsed.max_publishes_per_sec, parsed.max_inflight), (0, 20));
        assert!(
            toml::from_str::<BrokerLimits>("max_inflight = 0").is_ok(),
            "checked at load"
        );
        assert!(toml::from_str::<BrokerLimits>("max_inflight = 70000").is_err());
    }
}
