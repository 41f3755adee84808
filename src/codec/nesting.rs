//! How deep field tables and arrays nest, found without recursion, before amq-protocol's
//! recursive parser sees them: a frame of nested arrays (5 bytes a level, 20,000 levels under
//! frame_max) would otherwise overflow a worker's stack and abort the whole process.
//!
//! Only the frames that carry tables are walked: content-header properties (the headers table)
//! and the methods with an arguments or client-properties table. Anything the walk cannot make
//! sense of is left for the real parser to refuse.

/// Deepest nesting accepted: a table or array inside a table counts as one level more.
pub const MAX_DEPTH: usize = 64;

/// Where the walk stopped: nested too deep, or cut short (the parser will report that).
#[derive(Debug, PartialEq, Eq)]
pub struct TooDeep;

fn u32_at(data: &[u8], pos: usize) -> Option<usize> {
    let b: [u8; 4] = data.get(pos..pos + 4)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(b)).ok()
}

/// Bytes taken by a shortstr at `pos` (length octet included).
fn shortstr(data: &[u8], pos: usize) -> Option<usize> {
    data.get(pos).map(|&n| 1 + usize::from(n))
}

/// Check the field table that starts at `pos` (its 4-byte length first).
fn table_at(data: &[u8], pos: usize) -> Result<(), TooDeep> {
    let Some(len) = u32_at(data, pos) else {
        return Ok(());
    };
    let start = pos + 4;
    // Open containers: (end offset, whether entries have names).
    let mut open: Vec<(usize, bool)> = vec![(start.saturating_add(len), true)];
    let mut pos = start;
    while let Some(&(end, named)) = open.last() {
        if pos >= end {
            open.pop();
            pos = end;
            continue;
        }
        if named {
            let Some(n) = shortstr(data, pos) else {
                return Ok(());
            };
            pos += n;
        }
        let Some(&kind) = data.get(pos) else {
            return Ok(());
        };
        pos += 1;
        let fixed = match kind {
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'L' | b'l' | b'd' | b'T' => 8,
            b'D' => 5,
            b'V' => 0,
            b'S' | b'x' => match u32_at(data, pos) {
                Some(n) => 4 + n,
                None => return Ok(()),
            },
            b'F' | b'A' => {
                let Some(n) = u32_at(data, pos) else {
                    return Ok(());
                };
                if open.len() >= MAX_DEPTH {
                    return Err(TooDeep);
                }
                pos += 4;
                open.push((pos.saturating_add(n), kind == b'F'));
                continue;
            }
            _ => return Ok(()),
        };
        pos = pos.saturating_add(fixed);
    }
    Ok(())
}

/// A content header payload (class, weight, body size, then the properties).
pub fn check_header(payload: &[u8]) -> Result<(), TooDeep> {
    let Some(flags) = payload.get(12..14) else {
        return Ok(());
    };
    let flags = u16::from_be_bytes([flags[0], flags[1]]);
    let mut pos = 14;
    // content-type and content-encoding come before headers.
    for bit in [15, 14] {
        if flags & (1 << bit) != 0 {
            let Some(n) = shortstr(payload, pos) else {
                return Ok(());
            };
            pos += n;
        }
    }
    if flags & (1 << 13) != 0 {
        table_at(payload, pos)?;
    }
    Ok(())
}

/// A method payload (class and method ids first). What precedes each method's table: shortstrs
/// (`s`), a reserved short (`r`), and bit octets (`b`).
pub fn check_method(class: u16, method: u16, payload: &[u8]) -> Result<(), TooDeep> {
    let layout: &[u8] = match (class, method) {
        (10, 11) => b"",      // connection.start-ok: client-properties
        (40, 10) => b"rssb",  // exchange.declare
        (40, 30) => b"rsssb", // exchange.bind
        (40, 40) => b"rsssb", // exchange.unbind
        (50, 10) => b"rsb",   // queue.declare
        (50, 20) => b"rsssb", // queue.bind
        (50, 50) => b"rsss",  // queue.unbind
        (60, 20) => b"rssb",  // basic.consume
        _ => return Ok(()),
    };
    let mut pos = 4;
    for field in layout {
        pos += match field {
            b'r' => 2,
            b'b' => 1,
            _ => match shortstr(payload, pos) {
                Some(n) => n,
                None => return Ok(()),
            },
        };
    }
    table_at(payload, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table whose one entry nests `levels` arrays.
    fn nested_table(levels: usize) -> Vec<u8> {
        let mut value = vec![b'V'];
        for _ in 0..levels {
            let mut a = vec![b'A'];
            a.extend_from_slice(&(value.len() as u32).to_be_bytes());
            a.extend_from_slice(&value);
            value = a;
        }
        let mut entries = vec![1, b'k'];
        entries.extend_from_slice(&value);
        let mut t = (entries.len() as u32).to_be_bytes().to_vec();
        t.extend_from_slice(&entries);
        t
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        assert_eq!(table_at(&nested_table(MAX_DEPTH - 1), 0), Ok(()));
        assert_eq!(table_at(&nested_table(MAX_DEPTH), 0), Err(TooDeep));
        assert_eq!(table_at(&nested_table(100_000), 0), Err(TooDeep));
        // Cut short: left for the parser.
        assert_eq!(table_at(&nested_table(10)[..7], 0), Ok(()));
    }

    #[test]
    fn headers_of_a_content_header() {
        let mut h = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        h.extend_from_slice(&((1u16 << 15) | (1 << 13)).to_be_bytes());
        h.extend_from_slice(&[4, b't', b'e', b'x', b't']);
        let ok = h.clone();
        let mut deep = h;
        deep.extend_from_slice(&nested_table(1000));
        let mut ok = ok;
        ok.extend_from_slice(&nested_table(3));
        assert_eq!(check_header(&ok), Ok(()));
        assert_eq!(check_header(&deep), Err(TooDeep));
    }
}
