//! One small file of the broker's own state replaced atomically and durably: written to
//! `<name>.tmp`, fsynced, renamed over `<name>`, and the directory fsynced. After a crash at
//! any point the file is either the old version or the new one, never a mix (the topic
//! metadata, `metadata.rs`, and users and ACLs, `auth/store.rs`, are kept this way).
//!
//! [`write_checked`] / [`read_checked`] add a CRC32C line in front of the content, so a file
//! damaged on disk is refused with a clear error instead of being half-believed.

use std::io::Write;
use std::path::Path;

/// Replaces `<dir>/<name>` with `bytes`, atomically and durably (see the module docs).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The first line of a checked file: `crc32c <8 hex digits>`, over the bytes after it.
const CRC_PREFIX: &str = "crc32c ";

/// [`write_atomic`] with a CRC32C line in front of `content`.
pub fn write_checked(dir: &Path, name: &str, content: &[u8]) -> std::io::Result<()> {
    let mut bytes = format!("{CRC_PREFIX}{:08x}\n", crc32c::crc32c(content)).into_bytes();
    bytes.extend_from_slice(content);
    write_atomic(dir, name, &bytes)
}

/// The content of a file written by [`write_checked`], `None` if there is none; an
/// `InvalidData` error naming the file if its CRC does not match.
pub fn read_checked(dir: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |why: &str| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {why}", path.display()))
    };
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| bad("no CRC line"))?;
    let line = std::str::from_utf8(&bytes[..newline]).map_err(|_| bad("bad CRC line"))?;
    let stored = line
        .strip_prefix(CRC_PREFIX)
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or_else(|| bad("bad CRC line"))?;
    let content = &bytes[newline + 1..];
    let computed = crc32c::crc32c(content);
    if stored != computed {
        return Err(bad(&format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is damaged"
        )));
    }
    Ok(Some(content.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_round_trip_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_checked(dir.path(), "f").unwrap().is_none());
        write_checked(dir.path(), "f", b"{\"a\":1}").unwrap();
        assert_eq!(read_checked(dir.path(), "f").unwrap().unwrap(), b"{\"a\":1}");
        assert!(!dir.path().join("f.tmp").exists());
        let mut raw = std::fs::read(dir.path().join("f")).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        std::fs::write(dir.path().join("f"), raw).unwrap();
        let e = read_checked(dir.path(), "f").unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
    }
}
