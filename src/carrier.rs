//! Energy carriers a device can measure (`[[devices]] carrier`): the tag of its points, and the
//! carrier its counters are accounted under. The factor tables may know more carriers than these
//! (a crude-oil row, a site's own rows) for consumption imported without a meter; those stay the
//! tables' ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! carriers {
    ($( $variant:ident => $name:literal, $en:literal; )*) => {
        /// An energy carrier a device can be tagged with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Carrier {
            $( $variant, )*
        }

        impl Carrier {
            /// Every carrier, in the order `check` lists them.
            pub const ALL: &'static [Carrier] = &[ $( Carrier::$variant, )* ];

            /// The name in the configuration, tags and the store.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Carrier::$variant => $name, )*
                }
            }

            /// The English name in reports and on the live page (in Chinese, the factor
            /// table's row names the carrier).
            pub fn en_name(self) -> &'static str {
                match self {
                    $( Carrier::$variant => $en, )*
                }
            }
        }
    };
}

carriers! {
    Electricity => "electricity", "Electricity";
    NaturalGas => "natural_gas", "Natural gas";
    Steam => "steam", "Steam";
    Heat => "heat", "Heat";
    Water => "water", "Water";
    CompressedAir => "compressed_air", "Compressed air";
    Coal => "coal", "Coal";
    Coke => "coke", "Coke";
    Diesel => "diesel", "Diesel";
    Gasoline => "gasoline", "Gasoline";
    Lpg => "lpg", "LPG";
    FuelOil => "fuel_oil", "Fuel oil";
    Production => "production", "production";
    Other => "other", "other";
}

/// A carrier name outside [`Carrier::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown carrier \"{0}\"; expected one of: {known}", known = known_carriers())]
pub struct UnknownCarrier(pub String);

fn known_carriers() -> String {
    Carrier::ALL
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Carrier {
    type Err = UnknownCarrier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Carrier::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCarrier(s.to_string()))
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Carrier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Carrier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_carrier_round_trips_through_its_name_and_serde() {
        for c in Carrier::ALL {
            assert_eq!(c.as_str().parse::<Carrier>().unwrap(), *c);
            assert_eq!(c.to_string(), c.as_str());
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Carrier>(&json).unwrap(), *c);
        }
    }

    #[test]
    fn an_unknown_carrier_names_the_known_ones() {
        let e = "plutonium".parse::<Carrier>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown carrier \"plutonium\"; expected one of: electricity, natural_gas, steam, heat, water, compressed_air, coal, coke, diesel, gasoline, lpg, fuel_oil, production, other"
        );
        let e = serde_json::from_str::<Carrier>("\"plutonium\"").unwrap_err();
        assert!(
            e.to_string().starts_with("unknown carrier \"plutonium\""),
            "{e}"
        );
    }
}
