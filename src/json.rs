//! JSON conventions shared by the serialized types (feature `serde`): JSON
//! has no infinity, so `+inf` / `-inf` are written as the strings `"inf"` /
//! `"-inf"` (and read back from those and a few common spellings); and
//! errors are one line whatever strings the input holds
//! ([`one_line_errors`]).

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// `T` deserialized with every error on one line.
///
/// serde's own messages quote field and variant names as the input spells
/// them (``unknown variant `a\nb` ``), so a name with an escaped newline in
/// a JSON file would put a line break in the message. The types read from
/// files deserialize through this: a message with a control character is
/// replaced by the same message with it escaped (position included, where
/// the deserializer had added one).
pub(crate) fn one_line_errors<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    T::deserialize(d).map_err(|e| {
        let message = e.to_string();
        if message.chars().any(char::is_control) {
            de::Error::custom(crate::error::escape(&message))
        } else {
            e
        }
    })
}

/// An `f64` that may be infinite, as JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number(pub(crate) f64);

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        inf_as_string::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        inf_as_string::deserialize(d).map(Number)
    }
}

/// `#[serde(with = "inf_as_string")]` for `f64` fields.
pub(crate) mod inf_as_string {
    use super::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_infinite() {
            s.serialize_str(if *v > 0.0 { "inf" } else { "-inf" })
        } else {
            s.serialize_f64(*v)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(f64),
        Str(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(x) => Ok(x),
            NumOrStr::Str(s) => match s.as_str() {
                "inf" | "+inf" | "Infinity" | "infinity" => Ok(f64::INFINITY),
                "-inf" | "-Infinity" | "-infinity" => Ok(f64::NEG_INFINITY),
                _ => Err(de::Error::custom(format!(
                    "expected a number, \"inf\" or \"-inf\", got {:?}",
                    crate::error::one_line(&s)
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::calibrate::ImageStatistics;
    use crate::{Alpha, Calibration, Calibrator, ConfidenceSets, Mode, ScoreTransform};

    /// Field and variant names with escaped line breaks in a calibration
    /// file give one-line errors (they used to be quoted raw by serde).
    #[test]
    fn errors_naming_strings_of_the_input_are_one_line() {
        let cal: Calibration = (0..20).map(|i| ImageStatistics { tau: f64::from(i), gamma: 0.0 }).collect();
        let c = Calibrator::new(ScoreTransform::Identity, ScoreTransform::Identity);
        let sets = c.fit(&cal, Mode::max(Alpha::new(0.1).unwrap())).unwrap();
        let text = serde_json::to_string(&sets).unwrap();
        for (from, to) in [
            (r#""mode":"max""#, r#""mode":"m\nax""#),
            (r#""name":"identity""#, r#""name":"iden\r\ntity""#),
            (r#""confseg_version":"0.1.0""#, r#""confseg_version":"99.0.0\nx""#),
        ] {
            assert!(text.contains(from), "{text}");
            let e =
                serde_json::from_str::<ConfidenceSets>(&text.replacen(from, to, 1)).unwrap_err().to_string();
            assert!(!e.contains(['\n', '\r']), "{e:?}");
            assert!(e.contains(r"\n"), "{e}");
        }
        let text = serde_json::to_string(&cal).unwrap();
        let e = serde_json::from_str::<Calibration>(&text.replacen(r#""tau""#, r#""t\nau""#, 1)).unwrap_err();
        assert!(e.to_string().contains(r"unknown field `t\nau`"), "{e}");
        // errors without control characters are serde_json's own, position included
        let e = serde_json::from_str::<Calibration>(r#"{"tau": [1], "gamma": true}"#).unwrap_err();
        assert!(e.to_string().ends_with("at line 1 column 26"), "{e}");
    }
}
