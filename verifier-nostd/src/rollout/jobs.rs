//! AWS IoT Jobs rollout controls in the signed plan (formats.md §4.9, key 17; docs/jobs.md,
//! "Rollout controls"): the rollout rate and its exponential ramp, the in-progress timeout, the
//! abort criteria and the retry criteria, with AWS's own names, bounds and semantics (AWS IoT API
//! Reference: `JobExecutionsRolloutConfig`, `ExponentialRolloutRate`, `RateIncreaseCriteria`,
//! `TimeoutConfig`, `AbortConfig`/`AbortCriteria`, `JobExecutionsRetryConfig`/`RetryCriteria`;
//! botocore's `iot` service model 2015-05-28 for the exact minimum and maximum of each).
//!
//! They are decided offline with the rest of the plan, so the relay that enforces them and the
//! `CreateJob` request exported for AWS IoT Core carry the same signed numbers. The two decimals
//! AWS allows are kept as integers: an increment factor in tenths (AWS accepts one digit after
//! the point), a threshold percentage in hundredths (two digits).

use crate::cbor::Reader;
use crate::error::CborError;

/// Most things a rate may name: AWS's `RolloutRatePerMinute` and `maximumPerMinute` (1 to 1000).
pub const MAX_PER_MINUTE: u64 = 1000;
/// Longest in-progress timeout, minutes (`inProgressTimeoutInMinutes`: 1 minute to 7 days).
pub const MAX_TIMEOUT_MINUTES: u64 = 10_080;
/// Largest AWS `integer` (a Java `int`): `NumberOfThings`, `MinimumNumberOfExecutedThings`.
pub const MAX_THINGS: u64 = 2_147_483_647;
/// Most retries of one failure type (`NumberOfRetries`: 0 to 10).
pub const MAX_RETRIES: u64 = 10;
/// Most retry criteria (`RetryCriteriaList`: 1 to 2).
pub const MAX_RETRY_CRITERIA: u64 = 2;
/// Increment factor bounds in tenths (`IncrementFactor`: 1.1 to 5, one decimal digit).
pub const INCREMENT_TENTHS: core::ops::RangeInclusive<u64> = 11..=50;
/// Threshold bounds in hundredths of a percent (`AbortThresholdPercentage`: at most 100, two
/// decimal digits; cairn refuses 0, a rule that would abort with no failure at all).
pub const THRESHOLD_HUNDREDTHS: core::ops::RangeInclusive<u64> = 1..=10_000;

/// A job execution failure type (`JobExecutionFailureType`; `RetryableFailureType` is the same
/// without `REJECTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureType {
    /// `FAILED`: the device reported the install failed (1).
    Failed,
    /// `REJECTED`: the device refused the job (its boot check refused the delivery) (2).
    Rejected,
    /// `TIMED_OUT`: the in-progress (or the device's step) timer ran out (3).
    TimedOut,
    /// `ALL`: any of the three (4).
    All,
}

impl FailureType {
    /// Every failure type, in code order.
    pub const ALL: [FailureType; 4] = [
        FailureType::Failed,
        FailureType::Rejected,
        FailureType::TimedOut,
        FailureType::All,
    ];

    /// The encoded value.
    pub fn code(self) -> u64 {
        match self {
            FailureType::Failed => 1,
            FailureType::Rejected => 2,
            FailureType::TimedOut => 3,
            FailureType::All => 4,
        }
    }

    /// The failure type of a code.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// AWS's name (`FAILED`, `REJECTED`, `TIMED_OUT`, `ALL`).
    pub fn name(self) -> &'static str {
        match self {
            FailureType::Failed => "FAILED",
            FailureType::Rejected => "REJECTED",
            FailureType::TimedOut => "TIMED_OUT",
            FailureType::All => "ALL",
        }
    }

    /// The failure type of an AWS name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether a failure of type `of` (never `All`) counts for this type.
    pub fn covers(self, of: FailureType) -> bool {
        self == of || (self == FailureType::All && of != FailureType::All)
    }

    /// Whether AWS can retry it (`RetryableFailureType`: `FAILED`, `TIMED_OUT`, `ALL`).
    pub fn retryable(self) -> bool {
        self != FailureType::Rejected
    }
}

/// What makes the exponential ramp step up (`RateIncreaseCriteria`: exactly one of the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateIncrease {
    /// `numberOfNotifiedThings`: after this many more things were notified.
    Notified(u32),
    /// `numberOfSucceededThings`: after this many more things succeeded.
    Succeeded(u32),
}

impl RateIncrease {
    /// The number of things.
    pub fn things(self) -> u32 {
        match self {
            RateIncrease::Notified(n) | RateIncrease::Succeeded(n) => n,
        }
    }

    /// AWS's member name.
    pub fn name(self) -> &'static str {
        match self {
            RateIncrease::Notified(_) => "numberOfNotifiedThings",
            RateIncrease::Succeeded(_) => "numberOfSucceededThings",
        }
    }
}

/// An exponential rollout rate (`ExponentialRolloutRate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExponentialRate {
    /// `baseRatePerMinute`: things notified per minute at the start, 1 to 1000.
    pub base_per_minute: u16,
    /// `incrementFactor` in tenths, 11 to 50 (1.1 to 5.0).
    pub increment_tenths: u8,
    /// `rateIncreaseCriteria`.
    pub increase: RateIncrease,
}

impl ExponentialRate {
    /// The rate after one increase from `rate`: `rate × factor`, rounded up (so a factor above 1
    /// always raises it), at most `cap`.
    pub fn next(&self, rate: u64, cap: u64) -> u64 {
        (rate * u64::from(self.increment_tenths))
            .div_ceil(10)
            .min(cap)
            .max(rate.min(cap))
    }
}

/// One abort criterion (`AbortCriteria`; its `action` is always `CANCEL` on AWS, a pause of the
/// campaign on the relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortCriterion {
    /// `failureType`.
    pub failure_type: FailureType,
    /// `thresholdPercentage` in hundredths of a percent, 1 to 10,000 (0.01 % to 100 %).
    pub threshold_hundredths: u16,
    /// `minNumberOfExecutedThings`, 1 to 2^31 − 1.
    pub min_executed: u32,
}

impl AbortCriterion {
    /// Whether `failed` of `executed` things fires it: at least the minimum executed, and a
    /// failed share at least the threshold.
    pub fn fires(&self, failed: u64, executed: u64) -> bool {
        executed >= u64::from(self.min_executed)
            && failed * 10_000 >= u64::from(self.threshold_hundredths) * executed
    }
}

/// One retry criterion (`RetryCriteria`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryCriterion {
    /// `failureType`: `FAILED`, `TIMED_OUT` or `ALL`.
    pub failure_type: FailureType,
    /// `numberOfRetries`, 0 to 10.
    pub retries: u8,
}

/// The Jobs rollout controls of a plan (key 17). At least one member is present; each is
/// optional as in `CreateJob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobsControls {
    /// `jobExecutionsRolloutConfig.maximumPerMinute`, 1 to 1000 (key 1). With a ramp, its cap.
    pub maximum_per_minute: Option<u16>,
    /// `jobExecutionsRolloutConfig.exponentialRate` (key 2).
    pub exponential_rate: Option<ExponentialRate>,
    /// `timeoutConfig.inProgressTimeoutInMinutes`, 1 to 10,080 (key 3).
    pub in_progress_timeout_minutes: Option<u32>,
    /// `abortConfig.criteriaList`: slot `code − 1` holds the criterion of the failure type of
    /// that code, if any (key 4).
    pub abort: [Option<AbortCriterion>; 4],
    /// `jobExecutionsRetryConfig.criteriaList`, at most two, failure types in code order
    /// (key 5).
    pub retry: [Option<RetryCriterion>; 2],
}

fn ranged(r: &mut Reader<'_>, range: core::ops::RangeInclusive<u64>) -> Result<u64, CborError> {
    let offset = r.position();
    let v = r.u64()?;
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(CborError::OutOfRange { offset })
    }
}

fn narrow<T: TryFrom<u64>>(v: u64, offset: usize) -> Result<T, CborError> {
    T::try_from(v).map_err(|_| CborError::OutOfRange { offset })
}

impl JobsControls {
    /// Whether no member is present (such controls are not encoded: the plan has no key 17).
    pub fn is_empty(&self) -> bool {
        self.maximum_per_minute.is_none()
            && self.exponential_rate.is_none()
            && self.in_progress_timeout_minutes.is_none()
            && self.abort.iter().all(Option::is_none)
            && self.retry.iter().all(Option::is_none)
    }

    /// The abort criteria present, in failure type order.
    pub fn abort_criteria(&self) -> impl Iterator<Item = AbortCriterion> + '_ {
        self.abort.iter().flatten().copied()
    }

    /// The retry criteria present, in failure type order.
    pub fn retry_criteria(&self) -> impl Iterator<Item = RetryCriterion> + '_ {
        self.retry.iter().flatten().copied()
    }

    /// The retries a failure of type `of` allows: its own criterion, else `ALL`'s, else none
    /// (`REJECTED` is never retried: AWS's `RetryableFailureType` excludes it).
    pub fn retries_for(&self, of: FailureType) -> u8 {
        if !of.retryable() {
            return 0;
        }
        let find = |t: FailureType| {
            self.retry_criteria()
                .find(|c| c.failure_type == t)
                .map(|c| c.retries)
        };
        find(of).or_else(|| find(FailureType::All)).unwrap_or(0)
    }

    /// The rate things are notified at, per minute, before any increase: the ramp's base, else
    /// `maximumPerMinute`, else none (no limit from the plan).
    pub fn initial_rate(&self) -> Option<u64> {
        match (self.exponential_rate, self.maximum_per_minute) {
            (Some(e), _) => Some(u64::from(e.base_per_minute)),
            (None, Some(m)) => Some(u64::from(m)),
            (None, None) => None,
        }
    }

    /// The highest rate the ramp may reach: `maximumPerMinute`, else AWS's 1000.
    pub fn rate_cap(&self) -> u64 {
        self.maximum_per_minute.map_or(MAX_PER_MINUTE, u64::from)
    }

    /// Reads key 17's value (the key already read): a map of 1 to 5 members in key order, each
    /// value checked against AWS's bounds, `OutOfRange` at the offending value.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, CborError> {
        let offset = r.position();
        let n = r.map_len()?;
        if n == 0 || n > 5 {
            return Err(CborError::OutOfRange { offset });
        }
        let mut c = Self::default();
        let mut last = 0;
        for _ in 0..n {
            let offset = r.position();
            let key = r.u64()?;
            if key <= last || key > 5 {
                return Err(CborError::UnexpectedKey {
                    offset,
                    expected: last + 1,
                    found: key,
                });
            }
            last = key;
            match key {
                1 => {
                    let offset = r.position();
                    c.maximum_per_minute = Some(narrow(ranged(r, 1..=MAX_PER_MINUTE)?, offset)?);
                }
                2 => {
                    let (rate, base_offset) = Self::read_rate(r)?;
                    // The ramp starts under its cap (docs/jobs.md); key 1, if present, came first.
                    if c.maximum_per_minute
                        .is_some_and(|max| rate.base_per_minute > max)
                    {
                        return Err(CborError::OutOfRange {
                            offset: base_offset,
                        });
                    }
                    c.exponential_rate = Some(rate);
                }
                3 => {
                    let offset = r.position();
                    let m = ranged(r, 1..=MAX_TIMEOUT_MINUTES)?;
                    c.in_progress_timeout_minutes = Some(narrow(m, offset)?);
                }
                4 => c.abort = Self::read_abort(r)?,
                _ => c.retry = Self::read_retry(r)?,
            }
        }
        Ok(c)
    }

    fn read_rate(r: &mut Reader<'_>) -> Result<(ExponentialRate, usize), CborError> {
        r.array_of(4)?;
        let base_offset = r.position();
        let base = narrow(ranged(r, 1..=MAX_PER_MINUTE)?, base_offset)?;
        let offset = r.position();
        let tenths = narrow(ranged(r, INCREMENT_TENTHS)?, offset)?;
        let kind = ranged(r, 0..=1)?;
        let offset = r.position();
        let things = narrow(ranged(r, 1..=MAX_THINGS)?, offset)?;
        let rate = ExponentialRate {
            base_per_minute: base,
            increment_tenths: tenths,
            increase: if kind == 0 {
                RateIncrease::Notified(things)
            } else {
                RateIncrease::Succeeded(things)
            },
        };
        Ok((rate, base_offset))
    }

    fn failure_type(r: &mut Reader<'_>, after: u64) -> Result<FailureType, CborError> {
        let offset = r.position();
        let code = r.u64()?;
        FailureType::from_code(code)
            .filter(|_| code > after)
            .ok_or(CborError::OutOfRange { offset })
    }

    fn read_abort(r: &mut Reader<'_>) -> Result<[Option<AbortCriterion>; 4], CborError> {
        let offset = r.position();
        let n = r.array_len()?;
        if n == 0 || n > 4 {
            return Err(CborError::OutOfRange { offset });
        }
        let mut out = [None; 4];
        let mut last = 0;
        for _ in 0..n {
            r.array_of(3)?;
            let failure_type = Self::failure_type(r, last)?;
            last = failure_type.code();
            let offset = r.position();
            let threshold = narrow(ranged(r, THRESHOLD_HUNDREDTHS)?, offset)?;
            let offset = r.position();
            let min = narrow(ranged(r, 1..=MAX_THINGS)?, offset)?;
            // One slot per failure type, in code order (`abort`'s documentation).
            if let Some(slot) = usize::try_from(last - 1).ok().and_then(|i| out.get_mut(i)) {
                *slot = Some(AbortCriterion {
                    failure_type,
                    threshold_hundredths: threshold,
                    min_executed: min,
                });
            }
        }
        Ok(out)
    }

    fn read_retry(r: &mut Reader<'_>) -> Result<[Option<RetryCriterion>; 2], CborError> {
        let offset = r.position();
        let n = r.array_len()?;
        if n == 0 || n > MAX_RETRY_CRITERIA {
            return Err(CborError::OutOfRange { offset });
        }
        let mut out = [None; 2];
        let mut last = 0;
        for slot in out.iter_mut().take(usize::try_from(n).unwrap_or(0)) {
            r.array_of(2)?;
            let offset = r.position();
            let failure_type = Self::failure_type(r, last)?;
            if !failure_type.retryable() {
                return Err(CborError::OutOfRange { offset });
            }
            last = failure_type.code();
            let offset = r.position();
            let retries = narrow(ranged(r, 0..=MAX_RETRIES)?, offset)?;
            *slot = Some(RetryCriterion {
                failure_type,
                retries,
            });
        }
        Ok(out)
    }

    /// Writes key 17's value (the caller wrote the key; the controls are not empty).
    #[cfg(feature = "alloc")]
    pub(crate) fn encode(&self, w: &mut crate::cbor::write::Writer) {
        let aborts = self.abort_criteria().count() as u64;
        let retries = self.retry_criteria().count() as u64;
        let n = u64::from(self.maximum_per_minute.is_some())
            + u64::from(self.exponential_rate.is_some())
            + u64::from(self.in_progress_timeout_minutes.is_some())
            + u64::from(aborts > 0)
            + u64::from(retries > 0);
        w.map(n);
        if let Some(m) = self.maximum_per_minute {
            w.u64(1).u64(u64::from(m));
        }
        if let Some(e) = self.exponential_rate {
            w.u64(2).array(4);
            w.u64(u64::from(e.base_per_minute))
                .u64(u64::from(e.increment_tenths));
            match e.increase {
                RateIncrease::Notified(n) => w.u64(0).u64(u64::from(n)),
                RateIncrease::Succeeded(n) => w.u64(1).u64(u64::from(n)),
            };
        }
        if let Some(m) = self.in_progress_timeout_minutes {
            w.u64(3).u64(u64::from(m));
        }
        if aborts > 0 {
            w.u64(4).array(aborts);
            for a in self.abort_criteria() {
                w.array(3).u64(a.failure_type.code());
                w.u64(u64::from(a.threshold_hundredths))
                    .u64(u64::from(a.min_executed));
            }
        }
        if retries > 0 {
            w.u64(5).array(retries);
            for c in self.retry_criteria() {
                w.array(2)
                    .u64(c.failure_type.code())
                    .u64(u64::from(c.retries));
            }
        }
    }
}

/// One line for people (dashboards, the audit summary), with AWS's names:
/// `maximumPerMinute 100; exponentialRate 50/min x2.0 every 20 succeeded things;
/// inProgressTimeoutInMinutes 60; abort FAILED >= 10.00% of >= 20 executed; retry FAILED x1`.
impl core::fmt::Display for JobsControls {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut sep = "";
        if let Some(m) = self.maximum_per_minute {
            write!(f, "maximumPerMinute {m}")?;
            sep = "; ";
        }
        if let Some(e) = self.exponential_rate {
            let what = match e.increase {
                RateIncrease::Notified(_) => "notified",
                RateIncrease::Succeeded(_) => "succeeded",
            };
            write!(
                f,
                "{sep}exponentialRate {}/min x{}.{} every {} {what} things",
                e.base_per_minute,
                e.increment_tenths / 10,
                e.increment_tenths % 10,
                e.increase.things()
            )?;
            sep = "; ";
        }
        if let Some(m) = self.in_progress_timeout_minutes {
            write!(f, "{sep}inProgressTimeoutInMinutes {m}")?;
            sep = "; ";
        }
        let mut first = true;
        for a in self.abort_criteria() {
            write!(
                f,
                "{}{}{} >= {}.{:02}% of >= {} executed",
                if first { sep } else { ", " },
                if first { "abort " } else { "" },
                a.failure_type.name(),
                a.threshold_hundredths / 100,
                a.threshold_hundredths % 100,
                a.min_executed
            )?;
            first = false;
            sep = "; ";
        }
        let mut first = true;
        for r in self.retry_criteria() {
            write!(
                f,
                "{}{}{} x{}",
                if first { sep } else { ", " },
                if first { "retry " } else { "" },
                r.failure_type.name(),
                r.retries
            )?;
            first = false;
        }
        Ok(())
    }
}
