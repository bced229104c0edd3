//! JSON conventions shared by the serialized types (feature `serde`): JSON
//! has no infinity, so `+inf` / `-inf` are written as the strings `"inf"` /
//! `"-inf"` (and read back from those and a few common spellings).

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

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
