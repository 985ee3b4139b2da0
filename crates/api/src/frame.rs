//! Docker's multiplexed stream format: an 8-byte header (stream type, three zero bytes,
//! big-endian length) before each chunk of stdout (1) or stderr (2) output.

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// Encodes one frame.
pub fn encode(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// Splits a buffer of frames: returns complete frames and leaves any partial one in `buf`.
pub fn decode(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= 8 {
        let len = u32::from_be_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]) as usize;
        if buf.len() - pos - 8 < len {
            break;
        }
        out.push((buf[pos], buf[pos + 8..pos + 8 + len].to_vec()));
        pos += 8 + len;
    }
    buf.drain(..pos);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_partial_frames() {
        let mut all = encode(STDOUT, b"hello");
        all.extend(encode(STDERR, b"err"));
        let mut buf = all[..10].to_vec();
        assert!(decode(&mut buf).is_empty());
        buf.extend_from_slice(&all[10..]);
        let f = decode(&mut buf);
        assert_eq!(f, vec![(STDOUT, b"hello".to_vec()), (STDERR, b"err".to_vec())]);
        assert!(buf.is_empty());
    }
}
