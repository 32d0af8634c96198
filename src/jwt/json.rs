//! A strict reader for the two JSON objects a token carries: the JOSE header
//! and the claim set (RFC 8259; RFC 7515 §5.2, RFC 7519 §7.2).
//!
//! Why not serde_json: per request the verifier reads a handful of members
//! of a ~120-byte object. Through serde_json, with the visitor needed to
//! classify claim types and refuse duplicate names, that took ~800 ns of a
//! ~1.7 µs verification (`perf`): a libc `memcmp` call per name comparison
//! and generic visitor glue. This reader borrows every name and string
//! without escapes, compares short names as packed integers, and does not
//! allocate for a typical token; with SIMD base64url as well, the
//! verification fell to ~1.0–1.25 µs (`cargo bench --bench verify`).
//!
//! The steps run for every member (`value`, `string`, `member_name`,
//! `number`, `end_of_container`, `Names::insert`) are `#[inline(always)]`:
//! called, their small results (a `Result<Json>`, a `Cow`) came back through
//! memory and were re-read with store-forwarding stalls (`perf annotate`);
//! inlined into the member loop they stay in registers, ~10 % of a
//! verification (`cargo bench --bench verify`, alternating A/B runs).
//!
//! Token issuers print claims compactly, and [`Compact`] reads that shape
//! (no whitespace, no escapes; integers, strings, literals, arrays of
//! strings) in fewer steps: no whitespace to skip, no general number
//! grammar, no error to build. A verification fell from 21,856 to 21,452
//! instructions with it (callgrind), ~60 ns natively (the fastest batches
//! of `cargo bench --bench verify`). At anything else it stops, and the
//! general [`Reader`] reads the text from the start and gives the verdict,
//! so strictness lives in one place. Tests hold [`Compact`] to [`Reader`]'s
//! reading of every generated document it accepts.
//!
//! It is as strict as serde_json, and stricter where serde_json is lenient:
//! UTF-8 is checked for the whole text, duplicate member names are refused,
//! and a lone surrogate escape is refused even inside ignored values. The
//! tests hold it to serde_json's verdict on generated documents.

use std::borrow::Cow;
use std::fmt;

use super::{JwtError, Segment};

/// A member value, classified by JSON type. Only the shapes the verifier
/// reads are kept; objects, null and mixed arrays are `Other`.
#[derive(Debug, PartialEq)]
pub(super) enum Json<'a> {
    Bool(bool),
    /// A negative integer (non-negative ones are `UInt`).
    Int(i64),
    UInt(u64),
    /// A number with a fraction or exponent, `-0`, or an integer beyond
    /// 64 bits: the classes serde_json gives them too.
    Float(f64),
    Str(Cow<'a, str>),
    Strings(Vec<Cow<'a, str>>),
    Other,
}

/// Deepest nesting [`Reader::skip`] follows: more than any token can hold
/// (an 8 KiB token decodes to 6 KiB), so depth is never a reason to refuse.
const MAX_DEPTH: usize = 8 * 1024;

pub(super) struct Reader<'a> {
    text: &'a str,
    at: usize,
    segment: Segment,
}

impl<'a> Reader<'a> {
    /// RFC 7515 §5.2 step 4, RFC 7519 §7.2 step 10: the segment must be
    /// UTF-8, all of it — strings skipped unread included.
    pub(super) fn new(json: &'a [u8], segment: Segment) -> Result<Self, JwtError> {
        match std::str::from_utf8(json) {
            Ok(text) => Ok(Reader {
                text,
                at: 0,
                segment,
            }),
            Err(_) => Err(json_error(segment, "not UTF-8")),
        }
    }

    /// The whole text, known to be UTF-8.
    pub(super) fn text(&self) -> &'a str {
        self.text
    }

    /// A refusal naming what was wrong and where.
    fn error(&self, what: impl fmt::Display) -> JwtError {
        json_error(self.segment, format!("{what} at byte {}", self.at))
    }

    /// Reads the whole text as one object, handing each member name to
    /// `member`, which must read or skip the value. Duplicate names are
    /// refused, known or not: parsers that disagree on which duplicate wins
    /// would let a token mean one thing here and another elsewhere, and RFC
    /// 7515 §5.2 / RFC 7519 §4 allow refusing them.
    pub(super) fn object(
        mut self,
        mut member: impl FnMut(&mut Self, &Name<'_>) -> Result<(), Syntax>,
    ) -> Result<(), JwtError> {
        self.skip_whitespace();
        if !self.eat(b'{') {
            return Err(json_error(self.segment, "not an object"));
        }
        let mut names = Names::default();
        let mut duplicate = None;
        let mut members = || -> Result<(), Syntax> {
            self.skip_whitespace();
            if self.eat(b'}') {
                return Ok(());
            }
            loop {
                let text = self.member_name()?;
                let name = Name::new(&text);
                if !names.insert(&name, &text) {
                    duplicate = Some(text.into_owned());
                    return Err(Syntax("duplicate member"));
                }
                self.skip_whitespace();
                member(&mut self, &name)?;
                if self.end_of_container(b'}')? {
                    return Ok(());
                }
            }
        };
        members().map_err(|Syntax(what)| match duplicate {
            Some(name) => self.error(format_args!("{what} {name:?}")),
            None => self.error(what),
        })?;
        self.skip_whitespace();
        match self.at == self.text.len() {
            true => Ok(()),
            false => Err(self.error("trailing characters")),
        }
    }

    /// Reads a value, keeping what a claim or header member may be.
    #[inline(always)]
    pub(super) fn value(&mut self) -> Result<Json<'a>, Syntax> {
        match self.peek() {
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => self.strings(),
            Some(b'{') => self.skip().map(|()| Json::Other),
            Some(b't') => self.literal("true").map(|()| Json::Bool(true)),
            Some(b'f') => self.literal("false").map(|()| Json::Bool(false)),
            Some(b'n') => self.literal("null").map(|()| Json::Other),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Syntax("expected a value")),
        }
    }

    /// Reads a string value, borrowed unless it has escapes.
    #[inline(always)]
    pub(super) fn string(&mut self) -> Result<Cow<'a, str>, Syntax> {
        if !self.eat(b'"') {
            return Err(Syntax("expected a string"));
        }
        let start = self.at;
        self.at += plain_run(self.text.as_bytes().get(start..).unwrap_or_default());
        match self.peek() {
            Some(b'"') => {
                let text = self.text.get(start..self.at);
                self.at += 1;
                text.map(Cow::Borrowed)
                    .ok_or(Syntax("string not on a character boundary"))
            }
            Some(b'\\') => self.escaped(start).map(Cow::Owned),
            Some(_) => Err(Syntax("control character in a string")),
            None => Err(Syntax("unterminated string")),
        }
    }

    /// Skips any value, checking its grammar. Nested arrays and objects are
    /// followed with one bit per level, not recursion, so depth costs
    /// neither stack nor a refusal.
    pub(super) fn skip(&mut self) -> Result<(), Syntax> {
        if !matches!(self.peek(), Some(b'[' | b'{')) {
            return self.scalar();
        }
        let mut objects = [0u64; MAX_DEPTH / 64];
        let mut depth = 0;
        loop {
            // At the start of a value.
            match self.peek() {
                Some(open @ (b'[' | b'{')) => {
                    self.at += 1;
                    if depth == MAX_DEPTH {
                        return Err(Syntax("nested too deeply"));
                    }
                    let object = open == b'{';
                    let (word, bit) = (depth / 64, 1u64 << (depth % 64));
                    objects[word] = (objects[word] & !bit) | if object { bit } else { 0 };
                    depth += 1;
                    self.skip_whitespace();
                    if !self.eat(if object { b'}' } else { b']' }) {
                        if object {
                            self.member_name()?;
                        }
                        self.skip_whitespace();
                        continue;
                    }
                    depth -= 1;
                }
                _ => self.scalar()?,
            }
            // After a value: close what ends here, then find the next value.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let object = objects[(depth - 1) / 64] & (1 << ((depth - 1) % 64)) != 0;
                if !self.end_of_container(if object { b'}' } else { b']' })? {
                    if object {
                        self.member_name()?;
                    }
                    self.skip_whitespace();
                    break;
                }
                depth -= 1;
            }
        }
    }

    /// Reads `"name":` and the whitespace around it.
    #[inline(always)]
    fn member_name(&mut self) -> Result<Cow<'a, str>, Syntax> {
        self.skip_whitespace();
        let name = self.string()?;
        self.skip_whitespace();
        match self.eat(b':') {
            true => Ok(name),
            false => Err(Syntax("expected ':'")),
        }
    }

    /// After a member or element: `,` (false) or the closing bracket (true).
    #[inline(always)]
    fn end_of_container(&mut self, close: u8) -> Result<bool, Syntax> {
        self.skip_whitespace();
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.at += 1;
                Ok(true)
            }
            _ if close == b'}' => Err(Syntax("expected ',' or '}'")),
            _ => Err(Syntax("expected ',' or ']'")),
        }
    }

    /// An array: `Strings` when every element is a string, else `Other`.
    fn strings(&mut self) -> Result<Json<'a>, Syntax> {
        self.at += 1;
        let mut strings = Vec::new();
        let mut all_strings = true;
        self.skip_whitespace();
        if self.eat(b']') {
            return Ok(Json::Strings(strings));
        }
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') if all_strings => strings.push(self.string()?),
                _ => {
                    all_strings = false;
                    self.skip()?;
                }
            }
            if self.end_of_container(b']')? {
                break;
            }
        }
        Ok(match all_strings {
            true => Json::Strings(strings),
            false => Json::Other,
        })
    }

    fn scalar(&mut self) -> Result<(), Syntax> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => Err(Syntax("expected a value")),
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), Syntax> {
        match spelled_at(self.text, self.at, word) {
            true => {
                self.at += word.len();
                Ok(())
            }
            false => Err(Syntax(word)),
        }
    }

    /// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    #[inline(always)]
    fn number(&mut self) -> Result<Json<'a>, Syntax> {
        let start = self.at;
        let negative = self.eat(b'-');
        let integer_part = self.at;
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(Syntax("invalid number")),
        }
        let integer_digits = self.text.as_bytes().get(integer_part..self.at);
        let mut integer = true;
        if self.eat(b'.') {
            integer = false;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            integer = false;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.digits()?;
        }
        // Integers beyond 64 bits are read as floats, as serde_json reads them.
        let magnitude = match integer_digits {
            Some(digits) if integer => decimal(digits),
            _ => None,
        };
        match (negative, magnitude) {
            (false, Some(m)) => return Ok(Json::UInt(m)),
            // -1 ..= -2^63; serde_json reads "-0" as the float -0.0.
            (true, Some(m @ 1..=0x8000_0000_0000_0000)) => {
                return Ok(Json::Int(0i64.wrapping_sub_unsigned(m)));
            }
            _ => {}
        }
        match self.text[start..self.at].parse::<f64>() {
            Ok(float) if float.is_finite() => Ok(Json::Float(float)),
            _ => Err(Syntax("number out of range")),
        }
    }

    /// One or more decimal digits.
    fn digits(&mut self) -> Result<(), Syntax> {
        let rest = self.text.as_bytes().get(self.at..).unwrap_or_default();
        let count = digit_run(rest);
        self.at += count;
        match count > 0 {
            true => Ok(()),
            false => Err(Syntax("invalid number")),
        }
    }

    /// The rest of a string with escapes, from its first backslash.
    fn escaped(&mut self, start: usize) -> Result<String, Syntax> {
        let mut out = String::from(&self.text[start..self.at]);
        let mut run = self.at;
        loop {
            match self.peek() {
                Some(b'"') => {
                    out.push_str(&self.text[run..self.at]);
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.at]);
                    let letter = self.text.as_bytes().get(self.at + 1).copied();
                    self.at += 2;
                    out.push(match letter {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(Syntax("invalid escape")),
                    });
                    run = self.at;
                }
                Some(0..=0x1f) => return Err(Syntax("control character in a string")),
                Some(_) => self.at += 1,
                None => return Err(Syntax("unterminated string")),
            }
        }
    }

    /// `XXXX` after `\u`, with the low half of a surrogate pair if this is
    /// the high half. A lone surrogate is not a character: refused.
    fn unicode_escape(&mut self) -> Result<char, Syntax> {
        let high = self.hex4()?;
        let code = match high {
            0xd800..=0xdbff => {
                if !self.text.as_bytes()[self.at..].starts_with(b"\\u") {
                    return Err(Syntax("lone surrogate in an escape"));
                }
                self.at += 2;
                match self.hex4()? {
                    low @ 0xdc00..=0xdfff => 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00),
                    _ => return Err(Syntax("lone surrogate in an escape")),
                }
            }
            code => code,
        };
        char::from_u32(code).ok_or(Syntax("lone surrogate in an escape"))
    }

    fn hex4(&mut self) -> Result<u32, Syntax> {
        let digits = self.text.get(self.at..self.at + 4);
        match digits.filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit())) {
            Some(digits) => {
                self.at += 4;
                u32::from_str_radix(digits, 16).map_err(|_| Syntax("invalid escape"))
            }
            None => Err(Syntax("invalid escape")),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }
}

/// The shape nearly every token's JSON has, read without the general
/// grammar: no whitespace, no escapes, and values that are strings,
/// non-negative integers that fit in a u64, `true`, `false`, `null` or
/// arrays of strings. At anything else it stops with `None`, and the
/// caller reads the text again with [`Reader`], which gives every verdict.
/// What it accepts, [`Reader::object`] reads the same way, value for value
/// (tested on generated documents); it only takes fewer steps.
pub(super) struct Compact<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Compact<'a> {
    /// Reads the whole text as one object, like [`Reader::object`]: the
    /// member callback reads or skips each value; `None` from it stops.
    #[inline(always)]
    pub(super) fn object(
        text: &'a str,
        mut member: impl FnMut(&mut Self, &Name<'_>) -> Option<()>,
    ) -> Option<()> {
        let bytes = text.as_bytes();
        if bytes.first() != Some(&b'{') {
            return None;
        }
        let mut reader = Compact { text, at: 1 };
        let mut names = Names::default();
        loop {
            let (start, end) = reader.plain()?;
            if bytes.get(reader.at) != Some(&b':') {
                return None;
            }
            reader.at += 1;
            let name = Name::within(text, start, end)?;
            if !names.insert(&name, &Cow::Borrowed(name.as_str())) {
                return None;
            }
            member(&mut reader, &name)?;
            match bytes.get(reader.at) {
                Some(b',') => reader.at += 1,
                Some(b'}') if reader.at + 1 == bytes.len() => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string without escapes.
    #[inline(always)]
    pub(super) fn string(&mut self) -> Option<&'a str> {
        let (start, end) = self.plain()?;
        self.text.get(start..end)
    }

    /// Where the content of a string without escapes starts and ends.
    #[inline(always)]
    fn plain(&mut self) -> Option<(usize, usize)> {
        let bytes = self.text.as_bytes();
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let end = start + plain_run(bytes.get(start..)?);
        if bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        Some((start, end))
    }

    #[inline(always)]
    fn value(&mut self) -> Option<Json<'a>> {
        match self.peek()? {
            b'"' => self.string().map(|s| Json::Str(Cow::Borrowed(s))),
            b'0'..=b'9' => self.uint().map(Json::UInt),
            b'[' => self.string_list().map(Json::Strings),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Other),
            _ => None,
        }
    }

    /// The next byte, which starts the value.
    #[inline(always)]
    pub(super) fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// A non-negative integer that fits in a u64.
    #[inline(always)]
    pub(super) fn uint(&mut self) -> Option<u64> {
        let rest = self.text.as_bytes().get(self.at..)?;
        // A fraction, an exponent or a leading zero's next digit is
        // not `,` or `}`: the object stops there.
        let count = match rest.first()? {
            b'0' => 1,
            b'1'..=b'9' => digit_run(rest),
            _ => return None,
        };
        self.at += count;
        // Beyond u64 the reader has a float: stop.
        decimal(rest.get(..count)?)
    }

    /// An array of strings, each borrowed.
    pub(super) fn string_list(&mut self) -> Option<Vec<Cow<'a, str>>> {
        if self.peek()? != b'[' {
            return None;
        }
        let mut strings = Vec::new();
        self.array(|string| strings.push(Cow::Borrowed(string)))?;
        Some(strings)
    }

    /// Skips a value, like [`Compact::value`] without keeping it.
    pub(super) fn skip(&mut self) -> Option<()> {
        match self.peek() {
            Some(b'[') => self.array(drop),
            _ => self.value().map(drop),
        }
    }

    /// An array of strings, each handed to `each`.
    #[inline(never)]
    fn array(&mut self, mut each: impl FnMut(&'a str)) -> Option<()> {
        let bytes = self.text.as_bytes();
        self.at += 1;
        if bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            each(self.string()?);
            match bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &str, value: Json<'a>) -> Option<Json<'a>> {
        spelled_at(self.text, self.at, word).then(|| {
            self.at += word.len();
            value
        })
    }
}

/// Whether `word` is spelled at byte `at` of `text`: both readers' test
/// for `true`, `false` and `null`.
fn spelled_at(text: &str, at: usize, word: &str) -> bool {
    text.as_bytes()
        .get(at..)
        .is_some_and(|rest| rest.starts_with(word.as_bytes()))
}

/// Bytes that end a run of plain string content: the closing quote, an
/// escape, and the control characters RFC 8259 §7 forbids unescaped.
const ENDS_PLAIN_RUN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The value of ASCII decimal digits, if it fits in a u64. Up to 19 digits
/// always fit, so only a 20th needs checked arithmetic.
fn decimal(digits: &[u8]) -> Option<u64> {
    match digits {
        _ if digits.len() <= 19 => Some(decimal_19(digits)),
        [head @ .., last] if digits.len() == 20 => decimal_19(head)
            .checked_mul(10)?
            .checked_add(u64::from(last - b'0')),
        _ => None,
    }
}

/// Up to 19 digits, eight at a time: a NumericDate has ten.
#[inline(always)]
fn decimal_19(digits: &[u8]) -> u64 {
    let (mut value, mut rest) = (0, digits);
    while let Some((eight, tail)) = rest.split_first_chunk::<8>() {
        value = value * 100_000_000 + eight_digits(*eight);
        rest = tail;
    }
    rest.iter().fold(value, |m, d| m * 10 + u64::from(d - b'0'))
}

/// Eight ASCII digits, most significant first, combined pairwise in one
/// word (SWAR): three multiplies instead of eight dependent ones.
fn eight_digits(digits: [u8; 8]) -> u64 {
    let v = u64::from_le_bytes(digits) - u64::from_ne_bytes([b'0'; 8]);
    let v = (v * 10 + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let v = (v * 100 + (v >> 16)) & 0x0000_ffff_0000_ffff;
    (v * 10_000 + (v >> 32)) & 0xffff_ffff
}

/// Length of the plain string content at the start of `bytes`: up to the
/// first byte that [`ENDS_PLAIN_RUN`]. Eight bytes per step (SWAR): the
/// lowest flagged byte of a word is always a true match.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    let mut at = 0;
    while let Some(Ok(chunk)) = bytes.get(at..at + 8).map(<[u8; 8]>::try_from) {
        let word = u64::from_le_bytes(chunk);
        let ends = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if ends != 0 {
            return at + ends.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    let rest = bytes.get(at..).unwrap_or_default();
    at + rest
        .iter()
        .position(|&b| ENDS_PLAIN_RUN[usize::from(b)])
        .unwrap_or(rest.len())
}

/// Length of the ASCII digits at the start of `bytes`, eight per step
/// like [`plain_run`]: after `^ '0'` a digit is a byte of at most 9, and
/// adding 0x76 sets the high bit of every larger one (a byte already above
/// 0x7f has it set); carries only run upwards, past the first non-digit.
fn digit_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut at = 0;
    while let Some(Ok(chunk)) = bytes.get(at..at + 8).map(<[u8; 8]>::try_from) {
        let x = u64::from_le_bytes(chunk) ^ (ONES * u64::from(b'0'));
        let not_digits = (x.wrapping_add(ONES * 0x76) | x) & HIGHS;
        if not_digits != 0 {
            return at + not_digits.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    let rest = bytes.get(at..).unwrap_or_default();
    at + rest.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// What the reader refused; [`Reader::object`] adds where.
pub(super) struct Syntax(pub(super) &'static str);

fn json_error(segment: Segment, reason: impl Into<String>) -> JwtError {
    JwtError::Json {
        segment,
        reason: reason.into(),
    }
}

/// A member name with its packed key (length and bytes in one integer,
/// for names of up to 7 bytes: most claim names). Equal names have equal
/// keys, so most comparisons are one integer compare.
#[derive(Clone, Copy)]
pub(super) struct Name<'n> {
    text: &'n str,
    key: u64,
}

impl<'n> Name<'n> {
    /// The key of every name of 8 bytes or more, which are compared as
    /// text. No packed key has all bits set: its top byte is a length < 8.
    pub(super) const LONG: u64 = u64::MAX;

    /// A name, its key packed with a few loads rather than a loop over its
    /// bytes.
    #[inline(always)]
    pub(super) fn new(text: &'n str) -> Name<'n> {
        let b = text.as_bytes();
        let len = b.len();
        let le32 = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let bytes = match len {
            0 => 0,
            1..=3 => {
                let byte = |at: usize| u64::from(b[at]) << (8 * at);
                byte(0) | byte(len / 2) | byte(len - 1)
            }
            // Two overlapping 4-byte loads; the shared bytes agree.
            4..=7 => u64::from(le32(0)) | u64::from(le32(len - 4)) << (8 * (len - 4)),
            _ => {
                return Name {
                    text,
                    key: Name::LONG,
                };
            }
        };
        Name {
            text,
            key: bytes | (len as u64) << 56,
        }
    }

    /// The name `text[start..end]` of a document: a short one's key is one
    /// load of the eight bytes from `start`, masked to its length, when the
    /// document goes on that far (a member name almost always does: `":`
    /// and a value follow it); otherwise [`Name::new`] packs it.
    #[inline(always)]
    pub(super) fn within(text: &'n str, start: usize, end: usize) -> Option<Name<'n>> {
        let name = text.get(start..end)?;
        let len = end - start;
        let eight = text.as_bytes().get(start..start + 8);
        Some(match eight.map(<[u8; 8]>::try_from) {
            Some(Ok(eight)) if len < 8 => Name {
                text: name,
                key: u64::from_le_bytes(eight) & ((1 << (8 * len)) - 1) | (len as u64) << 56,
            },
            _ => Name::new(name),
        })
    }

    /// The packed key of `text`: its bytes, little-endian, and its length
    /// in the top byte; [`Name::LONG`] from 8 bytes on.
    pub(super) const fn key_of(text: &str) -> u64 {
        let bytes = text.as_bytes();
        if bytes.len() >= 8 {
            return Name::LONG;
        }
        let (mut key, mut i) = ((bytes.len() as u64) << 56, 0);
        while i < bytes.len() {
            key |= (bytes[i] as u64) << (8 * i);
            i += 1;
        }
        key
    }

    pub(super) fn key(&self) -> u64 {
        self.key
    }

    pub(super) fn as_str(&self) -> &'n str {
        self.text
    }

    #[inline(always)]
    pub(super) fn is(&self, other: &Name<'_>) -> bool {
        self.key == other.key && (self.key != Name::LONG || self.text == other.text)
    }
}

/// Member names read so far: short ones as keys on the stack, so a typical
/// claim set is checked for duplicates without allocating.
#[derive(Default)]
struct Names<'a> {
    short: [u64; 16],
    shorts: usize,
    other: Vec<Cow<'a, str>>,
}

impl<'a> Names<'a> {
    /// Adds `name`; false if it was already there.
    #[expect(
        clippy::ptr_arg,
        reason = "a borrowed long name is kept without copying it"
    )]
    #[inline(always)]
    fn insert(&mut self, name: &Name<'_>, text: &Cow<'a, str>) -> bool {
        let known = |key: &u64| name.key == *key;
        if self.short[..self.shorts].iter().any(known) || self.other.iter().any(|o| o == text) {
            return false;
        }
        match (name.key, self.short.get_mut(self.shorts)) {
            (key, Some(slot)) if key != Name::LONG => {
                *slot = key;
                self.shorts += 1;
            }
            _ => self.other.push(text.clone()),
        }
        true
    }
}

#[cfg(test)]
mod tests;
