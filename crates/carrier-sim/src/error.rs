//! Configuration errors.
//!
//! Every setting of a [`LinkConfig`](crate::LinkConfig) is checked before a [`Link`](crate::Link)
//! accepts it ([`Link::new`](crate::Link::new), [`Link::set_config`](crate::Link::set_config),
//! [`NetworkSimulator::new`](crate::NetworkSimulator::new)). A bad value is reported as a
//! [`ConfigError`] whose message names the offending field with its path inside the config, for
//! example `latency.min_ms (120) > latency.max_ms (100)`. Nothing in this crate panics on a bad
//! configuration.

/// A [`LinkConfig`](crate::LinkConfig) value that the emulator refuses.
///
/// Field names are written as paths in the config (`bandwidth.min_kbps`,
/// `gilbert_elliott.p_good_to_bad`, ...). When a [`SimConfig`](crate::SimConfig) is checked, the
/// path starts with the direction (`inbound.latency.min_ms`).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The lower bound of a range is above its upper bound.
    #[error("{min_field} ({min}) > {max_field} ({max})")]
    InvertedRange {
        /// Path of the lower bound, e.g. `latency.min_ms`.
        min_field: String,
        /// Its value.
        min: f64,
        /// Path of the upper bound, e.g. `latency.max_ms`.
        max_field: String,
        /// Its value.
        max: f64,
    },
    /// A probability is NaN or outside `[0, 1]`.
    #[error("{field} ({value}) is not a probability in [0, 1]")]
    InvalidProbability {
        /// Path of the field, e.g. `loss_probability`.
        field: String,
        /// The value given.
        value: f64,
    },
    /// A duration in milliseconds is NaN, infinite or negative.
    #[error("{field} ({value}) is not a finite, non-negative number of milliseconds")]
    InvalidDuration {
        /// Path of the field, e.g. `latency.base_ms`.
        field: String,
        /// The value given.
        value: f64,
    },
    /// A value is above the largest one the emulator supports.
    #[error("{field} ({value}) is above the supported maximum ({max})")]
    TooLarge {
        /// Path of the field.
        field: String,
        /// The value given.
        value: f64,
        /// The largest accepted value, in the field's unit.
        max: f64,
    },
    /// A size, rate, interval or period that must be at least 1 is zero.
    #[error("{field} must not be zero")]
    Zero {
        /// Path of the field, e.g. `bandwidth.min_kbps` or `max_queued_packets`.
        field: String,
    },
    /// Jitter larger than the base latency would give negative delays.
    #[error("{jitter_field} ({jitter}) > {base_field} ({base}): the latency could go negative")]
    JitterExceedsBase {
        /// Path of the jitter field (`latency.jitter_ms`).
        jitter_field: String,
        /// The jitter given, in ms.
        jitter: f64,
        /// Path of the base field (`latency.base_ms`).
        base_field: String,
        /// The base latency given, in ms.
        base: f64,
    },
}

impl ConfigError {
    /// The same error with every field path prefixed by `prefix` and a dot (used to tell the
    /// inbound and outbound links of a [`SimConfig`](crate::SimConfig) apart).
    #[must_use]
    pub fn with_prefix(self, prefix: &str) -> Self {
        let p = |s: String| format!("{prefix}.{s}");
        match self {
            Self::InvertedRange {
                min_field,
                min,
                max_field,
                max,
            } => Self::InvertedRange {
                min_field: p(min_field),
                min,
                max_field: p(max_field),
                max,
            },
            Self::InvalidProbability { field, value } => Self::InvalidProbability {
                field: p(field),
                value,
            },
            Self::InvalidDuration { field, value } => Self::InvalidDuration {
                field: p(field),
                value,
            },
            Self::TooLarge { field, value, max } => Self::TooLarge {
                field: p(field),
                value,
                max,
            },
            Self::Zero { field } => Self::Zero { field: p(field) },
            Self::JitterExceedsBase {
                jitter_field,
                jitter,
                base_field,
                base,
            } => Self::JitterExceedsBase {
                jitter_field: p(jitter_field),
                jitter,
                base_field: p(base_field),
                base,
            },
        }
    }

    /// The path of the (first) field the error is about.
    pub fn field(&self) -> &str {
        match self {
            Self::InvertedRange { min_field, .. } => min_field,
            Self::InvalidProbability { field, .. }
            | Self::InvalidDuration { field, .. }
            | Self::TooLarge { field, .. }
            | Self::Zero { field } => field,
            Self::JitterExceedsBase { jitter_field, .. } => jitter_field,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_both_fields() {
        let e = ConfigError::InvertedRange {
            min_field: "latency.min_ms".into(),
            min: 120.0,
            max_field: "latency.max_ms".into(),
            max: 100.0,
        };
        assert_eq!(e.to_string(), "latency.min_ms (120) > latency.max_ms (100)");
        let e = e.with_prefix("inbound");
        assert_eq!(
            e.to_string(),
            "inbound.latency.min_ms (120) > inbound.latency.max_ms (100)"
        );
        assert_eq!(e.field(), "inbound.latency.min_ms");
    }
}
