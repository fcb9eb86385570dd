//! The backend's `{"list": [...]}` answers read item by item as their bytes arrive: each item is
//! parsed and handed to a `keep` function as soon as its last byte is in, so neither the answer's
//! text nor its parsed form is held whole (an account's entity list is 10 MB at 1,000 devices).
//!
//! [`ListItems`] finds where each item of the `list` array starts and ends, following strings,
//! escapes and nesting byte by byte; serde_json parses each item, and at the end the rest of the
//! answer with its list emptied, so that an answer serde_json would refuse is refused here too.

use serde::de::{DeserializeOwned, IgnoredAny};
use std::marker::PhantomData;

/// A list answer being read: what `keep` made of the items so far.
pub(super) struct KeptList<I, T, F> {
    items: ListItems,
    keep: F,
    kept: Vec<T>,
    item: PhantomData<I>,
}

impl<I: DeserializeOwned, T, F: FnMut(I) -> Option<T>> KeptList<I, T, F> {
    pub fn new(keep: F) -> Self {
        KeptList {
            items: ListItems::default(),
            keep,
            kept: Vec::new(),
            item: PhantomData,
        }
    }

    /// Reads the next bytes of the answer. The error is the reason the answer is refused.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        let (keep, kept) = (&mut self.keep, &mut self.kept);
        self.items
            .feed(chunk, &mut |index, bytes| {
                let item = serde_json::from_slice::<I>(bytes)
                    .map_err(|e| format!("item {index} of the list: {e}"))?;
                kept.extend(keep(item));
                Ok(())
            })
            .map_err(|e| self.items.explain(e))
    }

    /// Checks that the answer was whole and well-formed, and returns what was kept.
    pub fn finish(self) -> Result<Vec<T>, String> {
        self.items.finish().map_err(|e| self.items.explain(e))?;
        Ok(self.kept)
    }
}

/// The byte scanner under [`KeptList`].
#[derive(Default)]
struct ListItems {
    /// The answer without the items of its list (`"list": []`), parsed at the end.
    skeleton: Vec<u8>,
    /// The bytes of the item being read.
    item: Vec<u8>,
    /// How many items were read, for error messages.
    count: usize,
    /// Nesting outside the list: 1 inside the answer's own object.
    depth: u32,
    string: Text,
    place: Place,
    /// The last string closed at depth 1, quotes included: the key when a `:` follows.
    last_string: Vec<u8>,
    /// The value being read at depth 1 is the list's.
    list_value_next: bool,
    found: bool,
}

/// Whether the scanner is in a string.
#[derive(Default, Clone, Copy, PartialEq)]
enum Text {
    #[default]
    Outside,
    Inside,
    Escaped,
}

impl Text {
    /// The state after `byte`, and whether that byte closed a string.
    fn step(self, byte: u8) -> (Text, bool) {
        match (self, byte) {
            (Text::Outside, b'"') => (Text::Inside, false),
            (Text::Outside, _) => (Text::Outside, false),
            (Text::Inside, b'\\') => (Text::Escaped, false),
            (Text::Inside, b'"') => (Text::Outside, true),
            (Text::Inside, _) | (Text::Escaped, _) => (Text::Inside, false),
        }
    }
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Place {
    #[default]
    Outside,
    /// In the list, between items: after `[`, after an item, or after a comma.
    Open,
    AfterItem,
    AfterComma,
    /// In an item: an object or array (with its nesting), a string, or a number or literal.
    Nested(u32),
    Str,
    Scalar,
}

/// What is done with each item's bytes, given its index in the list.
type OnItem<'a> = dyn FnMut(usize, &[u8]) -> Result<(), String> + 'a;

/// Keys longer than this cannot be `list`, however escaped.
const LONGEST_KEY: usize = 32;

impl ListItems {
    fn feed(&mut self, chunk: &[u8], item: &mut OnItem) -> Result<(), String> {
        for &byte in chunk {
            match self.place {
                Place::Outside => self.outside(byte)?,
                _ => self.in_list(byte, item)?,
            }
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        if self.place != Place::Outside {
            return Err("the answer ends inside the list".into());
        }
        serde_json::from_slice::<IgnoredAny>(&self.skeleton).map_err(|e| e.to_string())?;
        if !self.found {
            return Err("missing field `list`".into());
        }
        Ok(())
    }

    /// Names an HTML page as such rather than as bad JSON.
    fn explain(&self, error: String) -> String {
        if super::looks_like_html(&self.skeleton) {
            "an HTML page instead of JSON".into()
        } else {
            error
        }
    }

    fn outside(&mut self, byte: u8) -> Result<(), String> {
        self.skeleton.push(byte);
        if self.list_value_next && !byte.is_ascii_whitespace() {
            self.list_value_next = false;
            if byte != b'[' {
                return Err("invalid type: the list is not an array".into());
            }
            self.found = true;
            self.skeleton.push(b']');
            self.place = Place::Open;
            return Ok(());
        }
        let was_in_string = self.string != Text::Outside;
        let (string, _) = self.string.step(byte);
        self.string = string;
        if was_in_string || string != Text::Outside {
            if self.depth == 1 {
                if !was_in_string {
                    self.last_string.clear();
                }
                if self.last_string.len() <= LONGEST_KEY {
                    self.last_string.push(byte);
                }
            }
            return Ok(());
        }
        match byte {
            b':' if self.depth == 1 && self.last_key_is_list() => {
                if self.found {
                    return Err("duplicate field `list`".into());
                }
                self.list_value_next = true;
            }
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        Ok(())
    }

    fn last_key_is_list(&self) -> bool {
        self.last_string.len() <= LONGEST_KEY
            && serde_json::from_slice::<String>(&self.last_string).is_ok_and(|key| key == "list")
    }

    fn in_list(&mut self, byte: u8, item: &mut OnItem) -> Result<(), String> {
        match self.place {
            Place::Nested(depth) => {
                self.item.push(byte);
                let (string, _) = self.string.step(byte);
                let in_string = self.string != Text::Outside || string != Text::Outside;
                self.string = string;
                let depth = match byte {
                    _ if in_string => depth,
                    b'{' | b'[' => depth + 1,
                    b'}' | b']' => depth - 1,
                    _ => depth,
                };
                self.place = Place::Nested(depth);
                if depth == 0 {
                    self.emit(item)?;
                }
            }
            Place::Str => {
                self.item.push(byte);
                let (string, closed) = self.string.step(byte);
                self.string = string;
                if closed {
                    self.emit(item)?;
                }
            }
            Place::Scalar => {
                if byte.is_ascii_whitespace() || byte == b',' || byte == b']' {
                    self.emit(item)?;
                    return self.in_list(byte, item);
                }
                self.item.push(byte);
            }
            between => self.between_items(between, byte)?,
        }
        Ok(())
    }

    fn between_items(&mut self, place: Place, byte: u8) -> Result<(), String> {
        let at = self.count;
        self.place = match (place, byte) {
            (_, b' ' | b'\t' | b'\n' | b'\r') => place,
            (Place::Open | Place::AfterItem, b']') => {
                self.depth = 1;
                Place::Outside
            }
            (Place::AfterComma, b']') => return Err(format!("trailing comma after item {at}")),
            (Place::AfterItem, b',') => Place::AfterComma,
            (Place::AfterItem, _) => return Err(format!("expected `,` or `]` after item {at}")),
            (_, b',') => return Err(format!("expected item {at} of the list")),
            (_, first) => {
                self.item.clear();
                self.item.push(first);
                let (string, _) = Text::Outside.step(first);
                self.string = string;
                match first {
                    b'{' | b'[' => Place::Nested(1),
                    b'"' => Place::Str,
                    _ => Place::Scalar,
                }
            }
        };
        Ok(())
    }

    fn emit(&mut self, item: &mut OnItem) -> Result<(), String> {
        self.place = Place::AfterItem;
        self.string = Text::Outside;
        item(self.count, &self.item)?;
        self.count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::kept_list;
    use super::KeptList;
    use serde_json::Value as Json;

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
        let error = kept_list("GET /x/", b"<html><body>", Some::<u64>).unwrap_err();
        assert!(error.to_string().contains("HTML"), "{error}");
    }

    /// What serde_json makes of the whole answer at once: the reference.
    fn whole(body: &[u8]) -> Option<Vec<Json>> {
        #[derive(serde::Deserialize)]
        struct List {
            list: Vec<Json>,
        }
        serde_json::from_slice::<List>(body).ok().map(|l| l.list)
    }

    /// The answer read in chunks of `size` bytes.
    fn in_chunks(body: &[u8], size: usize) -> Option<Vec<Json>> {
        let mut list = KeptList::new(Some::<Json>);
        for chunk in body.chunks(size.max(1)) {
            list.feed(chunk).ok()?;
        }
        list.finish().ok()
    }

    const ANSWERS: &[&str] = &[
        r#"{"list": []}"#,
        r#"  {"list":[{"id":1,"name":"a]}\"\\","details":{"x":[1,[2,{}]]}}, {"id":2}] }  "#,
        r#"{"a": "list", "list": ["x", "y\"]", 1.5e3, -2, true, false, null, [], {}]}"#,
        r#"{"li\u0073t": [1, 2], "list": [3]}"#,
        r#"{"list": [1], "list": [2]}"#,
        r#"{"x": {"list": [9]}, "list": [{"list": [1]}]}"#,
        r#"{"list": [1,]}"#,
        r#"{"list": [,1]}"#,
        r#"{"list": [1 2]}"#,
        r#"{"list": [1,,2]}"#,
        r#"{"list": 5}"#,
        r#"{"list": "[1]"}"#,
        r#"{"list": [1]"#,
        r#"{"list": [1]} {}"#,
        r#"["list", [1]]"#,
        r#"{"a" "list": [1]}"#,
        r#"{"list": [tru]}"#,
        r#"{"list": [{"a": 1}}]}"#,
        r#"{"list": [[1]]]}"#,
        r#"{"list": ["\u00e9\ud83d\ude00", "\\"]}"#,
        "{\"list\": [\"a\nb\"]}",
        "{\"list\":\t[\r\n1\n]\n}",
        r#"{"list": [{"a": "}"}, "]"]}"#,
        r#"{}"#,
        r#""#,
    ];

    #[test]
    fn every_answer_reads_as_serde_json_reads_it_whole_in_any_chunks() {
        for answer in ANSWERS {
            let body = answer.as_bytes();
            // Every prefix too: answers cut short must be refused, never read as shorter lists.
            for end in 0..=body.len() {
                let body = &body[..end];
                let expected = whole(body);
                for size in [1, 2, 3, 7, body.len()] {
                    assert_eq!(
                        in_chunks(body, size),
                        expected,
                        "{:?} in chunks of {size}",
                        String::from_utf8_lossy(body)
                    );
                }
            }
        }
    }
}
