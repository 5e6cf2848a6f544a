//! Docker's `""` for an IPv4 address or prefix a network does not have
//! (an IPv6-only network's endpoints): 0.0.0.0 (0.0.0.0/32) in the types,
//! `""` on the wire, and back. Use with `#[serde(with = "blank")]`.
use std::{fmt::Display, net::Ipv4Addr, str::FromStr};

use ipnet::Ipv4Net;
use serde::{de::Error, Deserialize, Deserializer, Serializer};

/// A type with a value that stands for "none" and is written `""`.
pub trait Blank: Sized + PartialEq + Display + FromStr {
    const BLANK: Self;
}

impl Blank for Ipv4Addr {
    const BLANK: Self = Ipv4Addr::UNSPECIFIED;
}

impl Blank for Ipv4Net {
    const BLANK: Self = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 32);
}

pub fn serialize<T: Blank, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    if *v == T::BLANK {
        s.serialize_str("")
    } else {
        s.collect_str(v)
    }
}

pub fn deserialize<'de, T: Blank, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Ok(T::BLANK);
    }
    s.parse()
        .map_err(|_| D::Error::custom(format!("{s:?} is not an address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct V {
        #[serde(with = "super")]
        a: Ipv4Addr,
        #[serde(with = "super")]
        n: Ipv4Net,
    }

    #[test]
    fn blank_is_empty_both_ways() {
        let none = V {
            a: Ipv4Addr::UNSPECIFIED,
            n: Ipv4Net::BLANK,
        };
        let text = serde_json::to_string(&none).unwrap();
        assert_eq!(text, r#"{"a":"","n":""}"#);
        assert_eq!(serde_json::from_str::<V>(&text).unwrap(), none);
        let some = V {
            a: "10.0.0.2".parse().unwrap(),
            n: "10.0.0.2/24".parse().unwrap(),
        };
        let text = serde_json::to_string(&some).unwrap();
        assert_eq!(text, r#"{"a":"10.0.0.2","n":"10.0.0.2/24"}"#);
        assert_eq!(serde_json::from_str::<V>(&text).unwrap(), some);
        assert!(serde_json::from_str::<V>(r#"{"a":"x","n":""}"#).is_err());
    }
}
