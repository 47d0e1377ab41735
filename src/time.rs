//! Simulated time: integer milliseconds. No floating point ever decides the
//! order of events.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time or a duration, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ms(pub u64);

impl Ms {
    pub const ZERO: Ms = Ms(0);
    pub const MAX: Ms = Ms(u64::MAX);

    pub const fn from_millis(ms: u64) -> Ms {
        Ms(ms)
    }

    pub const fn from_secs(s: u64) -> Ms {
        Ms(s * 1000)
    }

    /// Seconds from user input: `None` when they do not fit.
    pub const fn checked_from_secs(s: u64) -> Option<Ms> {
        match s.checked_mul(1000) {
            Some(ms) => Some(Ms(ms)),
            None => None,
        }
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Seconds with millisecond precision, for output only.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn saturating_sub(self, other: Ms) -> Ms {
        Ms(self.0.saturating_sub(other.0))
    }

    /// The first point `anchor + k * period` (k >= 0) at or after `self`.
    pub fn next_on_grid(self, anchor: Ms, period: Ms) -> Ms {
        if self <= anchor {
            return anchor;
        }
        let k = (self.0 - anchor.0).div_ceil(period.0);
        Ms(anchor.0 + k * period.0)
    }

    /// Parses `250ms`, `30s`, `15m`, `2h`, `7d` or a combination like
    /// `1h30m`. A bare number is seconds.
    pub fn parse(text: &str) -> Result<Ms, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(n) = t.parse::<u64>() {
            return Ms::checked_from_secs(n).ok_or_else(|| format!("`{text}`: duration too large"));
        }
        let mut total: u64 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!(
                    "`{text}` is not a duration (expected e.g. 500ms, 30s, 15m, 2h, 7d)"
                ));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("`{text}`: number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let mult = match unit {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => {
                    return Err(format!(
                        "`{text}`: unknown unit `{unit}` (use ms, s, m, h or d)"
                    ))
                }
            };
            total = n
                .checked_mul(mult)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("`{text}`: duration too large"))?;
        }
        Ok(Ms(total))
    }
}

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms.is_multiple_of(86_400_000) && ms > 0 {
            write!(f, "{}d", ms / 86_400_000)
        } else if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Add for Ms {
    type Output = Ms;
    fn add(self, o: Ms) -> Ms {
        Ms(self.0.saturating_add(o.0))
    }
}

impl AddAssign for Ms {
    fn add_assign(&mut self, o: Ms) {
        self.0 = self.0.saturating_add(o.0);
    }
}

impl Sub for Ms {
    type Output = Ms;
    fn sub(self, o: Ms) -> Ms {
        Ms(self.0 - o.0)
    }
}

impl schemars::JsonSchema for Ms {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: a number with a unit (500ms, 30s, 15m, 2h, 7d, or combined like 1h30m); a bare integer is seconds.",
            "anyOf": [
                {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d))+$"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

impl Serialize for Ms {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Ms {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ms, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Ms;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 500ms, 30s, 15m, 2h or 7d")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Ms, E> {
                Ms::checked_from_secs(v)
                    .ok_or_else(|| E::custom(format!("`{v}` seconds: duration too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Ms, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom(format!("`{v}`: a duration cannot be negative")))?;
                self.visit_u64(v)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Ms, E> {
                Ms::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!(Ms::parse("30s").unwrap(), Ms(30_000));
        assert_eq!(Ms::parse("15m").unwrap(), Ms(900_000));
        assert_eq!(Ms::parse("7d").unwrap(), Ms(7 * 86_400_000));
        assert_eq!(Ms::parse("250ms").unwrap(), Ms(250));
        assert_eq!(Ms::parse("1h30m").unwrap(), Ms(5_400_000));
        assert_eq!(Ms::parse("45").unwrap(), Ms(45_000));
        assert!(Ms::parse("5 minutes").is_err());
        assert!(Ms::parse("m5").is_err());
        assert!(Ms::parse("").is_err());
        // Bare seconds that overflow milliseconds are refused, not wrapped.
        assert!(Ms::parse("18446744073709552").is_err());
        assert!(Ms::parse("18446744073709551615ms").is_ok());
        assert!(Ms::parse("213503982335d").is_err());
        assert_eq!(Ms(90_000).to_string(), "90s");
        assert_eq!(Ms(120_000).to_string(), "2m");
        assert_eq!(Ms(1500).to_string(), "1500ms");
    }

    #[test]
    fn grid() {
        let a = Ms(1000);
        let p = Ms(5000);
        assert_eq!(Ms(500).next_on_grid(a, p), Ms(1000));
        assert_eq!(Ms(1000).next_on_grid(a, p), Ms(1000));
        assert_eq!(Ms(1001).next_on_grid(a, p), Ms(6000));
        assert_eq!(Ms(11_000).next_on_grid(a, p), Ms(11_000));
    }
}
