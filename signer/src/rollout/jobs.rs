//! The plan file's `[jobs]` section: AWS IoT Jobs rollout controls as an operator writes them,
//! with AWS's names in snake case, checked against AWS's bounds and against the plan before
//! anything is signed (docs/jobs.md, "Rollout controls"; formats.md §4.9 key 17).
//!
//! ```toml
//! [jobs]
//! maximum_per_minute = 500            # JobExecutionsRolloutConfig.maximumPerMinute
//! in_progress_timeout_minutes = 60    # TimeoutConfig.inProgressTimeoutInMinutes
//!
//! [jobs.exponential_rate]             # ExponentialRolloutRate
//! base_rate_per_minute = 50
//! increment_factor = 2.0
//! number_of_succeeded_things = 100    # or number_of_notified_things (RateIncreaseCriteria)
//!
//! [[jobs.abort]]                      # AbortCriteria (action CANCEL: the relay pauses)
//! failure_type = "FAILED"             # FAILED, REJECTED, TIMED_OUT, ALL
//! threshold_percentage = 10.0
//! min_number_of_executed_things = 100
//!
//! [[jobs.retry]]                      # RetryCriteria
//! failure_type = "FAILED"             # FAILED, TIMED_OUT, ALL
//! number_of_retries = 2
//! ```

use cairn_verifier::rollout::jobs::{
    AbortCriterion, ExponentialRate, FailureType, INCREMENT_TENTHS, JobsControls, MAX_PER_MINUTE,
    MAX_RETRIES, MAX_RETRY_CRITERIA, MAX_THINGS, MAX_TIMEOUT_MINUTES, RateIncrease, RetryCriterion,
    THRESHOLD_HUNDREDTHS,
};
use serde::Deserialize;

use super::spec::SpecError;

type Result<T> = core::result::Result<T, SpecError>;

/// `[jobs.exponential_rate]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExponentialRateSpec {
    /// `baseRatePerMinute`, 1 to 1000.
    pub base_rate_per_minute: u64,
    /// `incrementFactor`, 1.1 to 5, one digit after the point.
    pub increment_factor: f64,
    /// `rateIncreaseCriteria.numberOfNotifiedThings`.
    pub number_of_notified_things: Option<u64>,
    /// `rateIncreaseCriteria.numberOfSucceededThings`.
    pub number_of_succeeded_things: Option<u64>,
}

/// One `[[jobs.abort]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortSpec {
    /// `failureType`: `FAILED`, `REJECTED`, `TIMED_OUT` or `ALL`.
    pub failure_type: String,
    /// `thresholdPercentage`, above 0 and at most 100, two digits after the point.
    pub threshold_percentage: f64,
    /// `minNumberOfExecutedThings`, at least 1.
    pub min_number_of_executed_things: u64,
}

/// One `[[jobs.retry]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// `failureType`: `FAILED`, `TIMED_OUT` or `ALL`.
    pub failure_type: String,
    /// `numberOfRetries`, 0 to 10.
    pub number_of_retries: u64,
}

/// The `[jobs]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsSpec {
    /// `maximumPerMinute`, 1 to 1000 (with a ramp, its cap).
    pub maximum_per_minute: Option<u64>,
    /// `inProgressTimeoutInMinutes`, 1 to 10,080.
    pub in_progress_timeout_minutes: Option<u64>,
    /// `exponentialRate`.
    pub exponential_rate: Option<ExponentialRateSpec>,
    /// `abortConfig.criteriaList`.
    #[serde(default)]
    pub abort: Vec<AbortSpec>,
    /// `jobExecutionsRetryConfig.criteriaList`.
    #[serde(default)]
    pub retry: Vec<RetrySpec>,
}

fn refuse(field: &str, why: impl std::fmt::Display) -> SpecError {
    SpecError::new(format!("jobs.{field}"), why.to_string())
}

fn within(field: &str, v: u64, range: std::ops::RangeInclusive<u64>, aws: &str) -> Result<u64> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(refuse(
            field,
            format!(
                "{v} is not {} to {} (AWS {aws})",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// `v` in units of `1 / scale` (10: tenths, 100: hundredths), refused if it has more digits
/// after the point than AWS accepts.
fn fixed(field: &str, v: f64, scale: f64, digits: &str) -> Result<u64> {
    let scaled = v * scale;
    let rounded = scaled.round();
    if !v.is_finite() || v < 0.0 || (scaled - rounded).abs() > 1e-6 {
        return Err(refuse(
            field,
            format!("{v} has more than {digits} after the point, or is not a number AWS accepts"),
        ));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "finite, non-negative and rounded: checked above"
    )]
    let n = rounded as u64;
    Ok(n)
}

fn failure_type(field: &str, name: &str) -> Result<FailureType> {
    FailureType::from_name(name).ok_or_else(|| {
        refuse(
            field,
            format!("failure_type {name:?} is not FAILED, REJECTED, TIMED_OUT or ALL"),
        )
    })
}

impl JobsSpec {
    /// The controls to sign, checked against AWS's bounds and against the plan: `eligible`
    /// devices and `max_attempts` per device. Every refusal names the field.
    pub fn controls(&self, eligible: u64, max_attempts: u8) -> Result<JobsControls> {
        let mut c = JobsControls::default();
        if let Some(m) = self.maximum_per_minute {
            let m = within(
                "maximum_per_minute",
                m,
                1..=MAX_PER_MINUTE,
                "maximumPerMinute",
            )?;
            c.maximum_per_minute = Some(u16::try_from(m).unwrap_or(u16::MAX));
        }
        if let Some(e) = &self.exponential_rate {
            c.exponential_rate = Some(Self::ramp(e, c.maximum_per_minute, eligible)?);
        }
        if let Some(m) = self.in_progress_timeout_minutes {
            let m = within(
                "in_progress_timeout_minutes",
                m,
                1..=MAX_TIMEOUT_MINUTES,
                "inProgressTimeoutInMinutes",
            )?;
            c.in_progress_timeout_minutes = Some(u32::try_from(m).unwrap_or(u32::MAX));
        }
        if self.abort.len() > 4 {
            return Err(refuse(
                "abort",
                format!(
                    "{} criteria: one per failure type, at most 4",
                    self.abort.len()
                ),
            ));
        }
        for (i, a) in self.abort.iter().enumerate() {
            let field = format!("abort[{i}]");
            let t = failure_type(&field, &a.failure_type)?;
            let slot = c
                .abort
                .get_mut(usize::try_from(t.code() - 1).unwrap_or(0))
                .ok_or_else(|| refuse(&field, "no slot"))?;
            if slot.is_some() {
                return Err(refuse(
                    &field,
                    format!("a second criterion for failure_type {}", t.name()),
                ));
            }
            let pct = format!("{field}.threshold_percentage");
            let threshold = fixed(&pct, a.threshold_percentage, 100.0, "two digits")?;
            if !THRESHOLD_HUNDREDTHS.contains(&threshold) {
                return Err(refuse(
                    &pct,
                    format!(
                        "{} is not above 0 and at most 100 (AWS AbortThresholdPercentage; 0 would abort with no failure)",
                        a.threshold_percentage
                    ),
                ));
            }
            let min_field = format!("{field}.min_number_of_executed_things");
            let min = within(
                &min_field,
                a.min_number_of_executed_things,
                1..=MAX_THINGS,
                "minNumberOfExecutedThings",
            )?;
            if min > eligible {
                return Err(refuse(
                    &min_field,
                    format!(
                        "{min} is above the {eligible} eligible devices: the rule could never fire"
                    ),
                ));
            }
            *slot = Some(AbortCriterion {
                failure_type: t,
                threshold_hundredths: u16::try_from(threshold).unwrap_or(u16::MAX),
                min_executed: u32::try_from(min).unwrap_or(u32::MAX),
            });
        }
        c.retry = Self::retries(&self.retry, max_attempts)?;
        if c.is_empty() {
            return Err(SpecError::new(
                "jobs",
                "the section sets no control; remove it or set one",
            ));
        }
        Ok(c)
    }

    fn ramp(
        e: &ExponentialRateSpec,
        maximum: Option<u16>,
        eligible: u64,
    ) -> Result<ExponentialRate> {
        let base = within(
            "exponential_rate.base_rate_per_minute",
            e.base_rate_per_minute,
            1..=MAX_PER_MINUTE,
            "baseRatePerMinute",
        )?;
        if let Some(max) = maximum.filter(|&m| base > u64::from(m)) {
            return Err(refuse(
                "exponential_rate.base_rate_per_minute",
                format!("{base} is above maximum_per_minute {max}, the ramp's cap"),
            ));
        }
        let field = "exponential_rate.increment_factor";
        let tenths = fixed(field, e.increment_factor, 10.0, "one digit")?;
        if !INCREMENT_TENTHS.contains(&tenths) {
            return Err(refuse(
                field,
                format!(
                    "{} is not 1.1 to 5 (AWS IncrementFactor)",
                    e.increment_factor
                ),
            ));
        }
        let (name, things, increase): (_, _, fn(u32) -> RateIncrease) = match (
            e.number_of_notified_things,
            e.number_of_succeeded_things,
        ) {
            (Some(n), None) => ("number_of_notified_things", n, RateIncrease::Notified),
            (None, Some(n)) => ("number_of_succeeded_things", n, RateIncrease::Succeeded),
            _ => {
                return Err(refuse(
                    "exponential_rate",
                    "give exactly one of number_of_notified_things and number_of_succeeded_things (AWS RateIncreaseCriteria)",
                ));
            }
        };
        let field = format!("exponential_rate.{name}");
        let things = within(&field, things, 1..=MAX_THINGS, "NumberOfThings")?;
        if things > eligible {
            return Err(refuse(
                &field,
                format!(
                    "{things} is above the {eligible} eligible devices: the rate would never increase"
                ),
            ));
        }
        Ok(ExponentialRate {
            base_per_minute: u16::try_from(base).unwrap_or(u16::MAX),
            increment_tenths: u8::try_from(tenths).unwrap_or(u8::MAX),
            increase: increase(u32::try_from(things).unwrap_or(u32::MAX)),
        })
    }

    fn retries(specs: &[RetrySpec], max_attempts: u8) -> Result<[Option<RetryCriterion>; 2]> {
        let mut out: [Option<RetryCriterion>; 2] = [None; 2];
        if specs.len() as u64 > MAX_RETRY_CRITERIA {
            return Err(refuse(
                "retry",
                format!(
                    "{} criteria: AWS allows at most {MAX_RETRY_CRITERIA} (RetryCriteriaList)",
                    specs.len()
                ),
            ));
        }
        let mut found: Vec<RetryCriterion> = Vec::with_capacity(specs.len());
        for (i, r) in specs.iter().enumerate() {
            let field = format!("retry[{i}]");
            let t = failure_type(&field, &r.failure_type)?;
            if !t.retryable() {
                return Err(refuse(
                    &field,
                    "failure_type REJECTED cannot be retried (AWS RetryableFailureType: FAILED, TIMED_OUT, ALL)",
                ));
            }
            if found.iter().any(|c| c.failure_type == t) {
                return Err(refuse(
                    &field,
                    format!("a second criterion for failure_type {}", t.name()),
                ));
            }
            let n_field = format!("{field}.number_of_retries");
            let n = within(
                &n_field,
                r.number_of_retries,
                0..=MAX_RETRIES,
                "numberOfRetries",
            )?;
            if n >= u64::from(max_attempts) {
                return Err(refuse(
                    &n_field,
                    format!(
                        "{n} retries need {} attempts, more than the plan's max_attempts {max_attempts}",
                        n + 1
                    ),
                ));
            }
            found.push(RetryCriterion {
                failure_type: t,
                retries: u8::try_from(n).unwrap_or(u8::MAX),
            });
        }
        found.sort_by_key(|c| c.failure_type.code());
        for (slot, c) in out.iter_mut().zip(found) {
            *slot = Some(c);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> JobsSpec {
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn decimals_follow_aws() {
        assert_eq!(fixed("f", 1.5, 10.0, "one digit").ok(), Some(15));
        assert!(fixed("f", 1.55, 10.0, "one digit").is_err());
        assert_eq!(fixed("t", 10.99, 100.0, "two digits").ok(), Some(1099));
        assert!(fixed("t", 10.999, 100.0, "two digits").is_err());
        assert!(fixed("t", -1.0, 100.0, "two digits").is_err());
        assert!(fixed("t", f64::NAN, 100.0, "two digits").is_err());
    }

    #[test]
    fn a_full_section_becomes_controls() {
        let s = spec(
            "maximum_per_minute = 500\nin_progress_timeout_minutes = 60\n\
             [exponential_rate]\nbase_rate_per_minute = 50\nincrement_factor = 2.0\nnumber_of_succeeded_things = 100\n\
             [[abort]]\nfailure_type = \"ALL\"\nthreshold_percentage = 25.5\nmin_number_of_executed_things = 50\n\
             [[abort]]\nfailure_type = \"FAILED\"\nthreshold_percentage = 10\nmin_number_of_executed_things = 100\n\
             [[retry]]\nfailure_type = \"TIMED_OUT\"\nnumber_of_retries = 1\n\
             [[retry]]\nfailure_type = \"FAILED\"\nnumber_of_retries = 2\n",
        );
        let c = s.controls(8203, 3).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.maximum_per_minute, Some(500));
        assert_eq!(
            c.exponential_rate,
            Some(ExponentialRate {
                base_per_minute: 50,
                increment_tenths: 20,
                increase: RateIncrease::Succeeded(100)
            })
        );
        let aborts: Vec<_> = c.abort_criteria().map(|a| a.failure_type).collect();
        assert_eq!(aborts, [FailureType::Failed, FailureType::All]);
        let retries: Vec<_> = c.retry_criteria().map(|r| r.failure_type).collect();
        assert_eq!(retries, [FailureType::Failed, FailureType::TimedOut]);
        assert_eq!(c.retries_for(FailureType::Rejected), 0);
    }

    #[test]
    fn invalid_rules_name_their_field() {
        let cases = [
            (
                "maximum_per_minute = 1001",
                "jobs.maximum_per_minute: 1001 is not 1 to 1000",
            ),
            (
                "[exponential_rate]\nbase_rate_per_minute = 10\nincrement_factor = 5.5\nnumber_of_notified_things = 10",
                "jobs.exponential_rate.increment_factor: 5.5 is not 1.1 to 5",
            ),
            (
                "[exponential_rate]\nbase_rate_per_minute = 10\nincrement_factor = 1.25\nnumber_of_notified_things = 10",
                "jobs.exponential_rate.increment_factor: 1.25 has more than one digit",
            ),
            (
                "[exponential_rate]\nbase_rate_per_minute = 10\nincrement_factor = 2\nnumber_of_notified_things = 10\nnumber_of_succeeded_things = 10",
                "jobs.exponential_rate: give exactly one",
            ),
            (
                "maximum_per_minute = 5\n[exponential_rate]\nbase_rate_per_minute = 10\nincrement_factor = 2\nnumber_of_notified_things = 10",
                "jobs.exponential_rate.base_rate_per_minute: 10 is above maximum_per_minute 5",
            ),
            (
                "[[abort]]\nfailure_type = \"CRASHED\"\nthreshold_percentage = 10\nmin_number_of_executed_things = 10",
                "jobs.abort[0]: failure_type \"CRASHED\"",
            ),
            (
                "[[abort]]\nfailure_type = \"FAILED\"\nthreshold_percentage = 100.5\nmin_number_of_executed_things = 10",
                "jobs.abort[0].threshold_percentage: 100.5 is not above 0 and at most 100",
            ),
            (
                "[[abort]]\nfailure_type = \"FAILED\"\nthreshold_percentage = 10\nmin_number_of_executed_things = 0",
                "jobs.abort[0].min_number_of_executed_things: 0 is not 1 to",
            ),
            (
                "[[abort]]\nfailure_type = \"FAILED\"\nthreshold_percentage = 10\nmin_number_of_executed_things = 9000",
                "jobs.abort[0].min_number_of_executed_things: 9000 is above the 8203 eligible",
            ),
            (
                "[[abort]]\nfailure_type = \"FAILED\"\nthreshold_percentage = 10\nmin_number_of_executed_things = 10\n[[abort]]\nfailure_type = \"FAILED\"\nthreshold_percentage = 20\nmin_number_of_executed_things = 10",
                "jobs.abort[1]: a second criterion for failure_type FAILED",
            ),
            (
                "[[retry]]\nfailure_type = \"REJECTED\"\nnumber_of_retries = 1",
                "jobs.retry[0]: failure_type REJECTED cannot be retried",
            ),
            (
                "[[retry]]\nfailure_type = \"FAILED\"\nnumber_of_retries = 11",
                "jobs.retry[0].number_of_retries: 11 is not 0 to 10",
            ),
            (
                "[[retry]]\nfailure_type = \"FAILED\"\nnumber_of_retries = 3",
                "jobs.retry[0].number_of_retries: 3 retries need 4 attempts",
            ),
            ("", "jobs: the section sets no control"),
        ];
        for (text, want) in cases {
            let got = spec(text)
                .controls(8203, 3)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(got.contains(want), "{text:?}: {got:?} lacks {want:?}");
        }
    }
}
