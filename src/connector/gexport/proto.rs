//! Protocol buffer wire format, by hand: the few proto2 messages of an
//! export (App Engine's `EntityProto` with its groups, the metadata) do not
//! justify a code generator, and proto2 groups are what generators handle
//! worst. Decoding borrows from the record; nothing is copied until the
//! model needs it.

/// A field's value as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// Length-delimited: bytes, a string or an embedded message.
    Bytes(&'a [u8]),
    /// A proto2 group's body (between its start and end tags).
    Group(&'a [u8]),
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Iterates over the fields of one message (or group body).
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub type WireResult<T> = Result<T, String>;

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> WireResult<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| "a varint runs past the end of the message".to_string())?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> WireResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| "a field runs past the end of the message".to_string())?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn tag(&mut self) -> WireResult<(u32, u8)> {
        let t = self.varint()?;
        let number = u32::try_from(t >> 3).map_err(|_| "a field number out of range")?;
        if number == 0 {
            return Err("field number 0".into());
        }
        Ok((number, (t & 7) as u8))
    }

    /// Skip a group's body; returns it. The start tag has been read.
    fn group(&mut self, number: u32, depth: u32) -> WireResult<&'a [u8]> {
        if depth > 64 {
            return Err("groups nested too deeply".into());
        }
        let start = self.pos;
        loop {
            let before = self.pos;
            let (n, wt) = self.tag()?;
            match wt {
                END_GROUP if n == number => return Ok(&self.buf[start..before]),
                END_GROUP => return Err(format!("group {number} closed by the end of group {n}")),
                START_GROUP => {
                    self.group(n, depth + 1)?;
                }
                _ => {
                    self.value(wt)?;
                }
            }
        }
    }

    fn value(&mut self, wt: u8) -> WireResult<Field<'a>> {
        Ok(match wt {
            VARINT => Field::Varint(self.varint()?),
            FIXED64 => Field::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| "short fixed64")?,
            )),
            FIXED32 => Field::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| "short fixed32")?,
            )),
            LEN => {
                let n = usize::try_from(self.varint()?).map_err(|_| "a length out of range")?;
                Field::Bytes(self.take(n)?)
            }
            other => return Err(format!("wire type {other} where a value was expected")),
        })
    }

    /// The next field, `None` at the end of the message.
    pub fn next_field(&mut self) -> WireResult<Option<(u32, Field<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let (number, wt) = self.tag()?;
        let field = match wt {
            START_GROUP => Field::Group(self.group(number, 0)?),
            END_GROUP => return Err(format!("an unmatched end of group {number}")),
            _ => self.value(wt)?,
        };
        Ok(Some((number, field)))
    }
}

impl<'a> Field<'a> {
    pub fn bytes(self) -> WireResult<&'a [u8]> {
        match self {
            Field::Bytes(b) | Field::Group(b) => Ok(b),
            _ => Err("expected a length-delimited field".into()),
        }
    }

    pub fn str(self) -> WireResult<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "a name that is not UTF-8".to_string())
    }

    pub fn varint(self) -> WireResult<u64> {
        match self {
            Field::Varint(v) => Ok(v),
            _ => Err("expected a varint field".into()),
        }
    }

    pub fn double(self) -> WireResult<f64> {
        match self {
            Field::Fixed64(v) => Ok(f64::from_bits(v)),
            _ => Err("expected a double field".into()),
        }
    }
}

// ---------------------------------------------------------------- writing

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, number: u32, wt: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wt));
}

pub fn put_uint(out: &mut Vec<u8>, number: u32, v: u64) {
    put_tag(out, number, VARINT);
    put_varint(out, v);
}

pub fn put_int(out: &mut Vec<u8>, number: u32, v: i64) {
    put_uint(out, number, v as u64);
}

pub fn put_double(out: &mut Vec<u8>, number: u32, v: f64) {
    put_tag(out, number, FIXED64);
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

pub fn put_bytes(out: &mut Vec<u8>, number: u32, b: &[u8]) {
    put_tag(out, number, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Write an embedded message: `body` fills a scratch buffer, which is then
/// written with its length.
pub fn put_message(out: &mut Vec<u8>, number: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    put_bytes(out, number, &inner);
}

/// Write a proto2 group.
pub fn put_group(out: &mut Vec<u8>, number: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put_tag(out, number, START_GROUP);
    body(out);
    put_tag(out, number, END_GROUP);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_nested_groups_round_trip() {
        let mut out = Vec::new();
        put_int(&mut out, 1, -5);
        put_group(&mut out, 12, |g| {
            put_bytes(g, 13, b"s~app");
            put_group(g, 14, |e| {
                put_bytes(e, 15, b"Kind");
                put_int(e, 16, 42);
            });
        });
        put_double(&mut out, 4, 1.5);
        let mut f = Fields::new(&out);
        assert_eq!(
            f.next_field().unwrap(),
            Some((1, Field::Varint(-5i64 as u64)))
        );
        let Some((12, Field::Group(body))) = f.next_field().unwrap() else {
            panic!("group expected")
        };
        let mut g = Fields::new(body);
        assert_eq!(g.next_field().unwrap(), Some((13, Field::Bytes(b"s~app"))));
        let Some((14, Field::Group(el))) = g.next_field().unwrap() else {
            panic!("inner group expected")
        };
        assert_eq!(
            Fields::new(el).next_field().unwrap(),
            Some((15, Field::Bytes(b"Kind")))
        );
        assert_eq!(g.next_field().unwrap(), None);
        assert_eq!(f.next_field().unwrap().unwrap().1.double().unwrap(), 1.5);
        assert_eq!(f.next_field().unwrap(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[0x0bu8][..],
            &[0x0a, 0x05, 1],
            &[0x80; 11],
            &[0x0c],
            &[0x00],
        ] {
            let mut f = Fields::new(bad);
            let mut r = Ok(None);
            for _ in 0..4 {
                r = f.next_field();
                if r.is_err() {
                    break;
                }
            }
            assert!(r.is_err(), "{bad:?}");
        }
    }
}
