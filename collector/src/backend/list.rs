//! The backend's `{"list": [...]}` answers read item by item: each item is handed to a `keep`
//! function as soon as it is parsed, so a list is never held whole in its parsed form.

use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use std::fmt;
use std::marker::PhantomData;

/// Reads `{"list": [...]}` (other keys ignored; a missing `list` is an error, as before) into
/// what `keep` makes of each item.
pub(super) struct Kept<I, F> {
    pub keep: F,
    pub item: PhantomData<I>,
}

impl<'de, I: DeserializeOwned, T, F: FnMut(I) -> Option<T>> DeserializeSeed<'de> for Kept<I, F> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, I: DeserializeOwned, T, F: FnMut(I) -> Option<T>> Visitor<'de> for Kept<I, F> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a \"list\" array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
        let mut items = Items {
            keep: self.keep,
            item: PhantomData,
        };
        let mut kept = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "list" && kept.is_none() {
                kept = Some(map.next_value_seed(&mut items)?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        kept.ok_or_else(|| serde::de::Error::missing_field("list"))
    }
}

/// The array of a list answer.
struct Items<I, F> {
    keep: F,
    item: PhantomData<I>,
}

impl<'de, I: DeserializeOwned, T, F: FnMut(I) -> Option<T>> DeserializeSeed<'de>
    for &mut Items<I, F>
{
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, I: DeserializeOwned, T, F: FnMut(I) -> Option<T>> Visitor<'de> for &mut Items<I, F> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut kept = Vec::new();
        while let Some(item) = seq.next_element::<I>()? {
            kept.extend((self.keep)(item));
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::super::kept_list;

    #[test]
    fn items_are_kept_one_by_one_and_other_keys_ignored() {
        let body = br#"{"extra": {"a": [1, 2]}, "list": [1, 2, 3, 4], "more": null}"#;
        let even = kept_list("GET /x/", body, |n: u64| (n % 2 == 0).then_some(n * 10));
        assert_eq!(even.unwrap(), vec![20, 40]);
    }

    #[test]
    fn a_bad_answer_is_a_decode_error_naming_the_request() {
        for body in [
            &br#"{"lost": []}"#[..],
            br#"{"list": [1, "x"]}"#,
            br#"{"list": []} tail"#,
            b"<html>",
        ] {
            let error = kept_list("GET /x/", body, Some::<u64>).unwrap_err();
            assert!(error.to_string().contains("GET /x/"), "{error}");
        }
    }
}
