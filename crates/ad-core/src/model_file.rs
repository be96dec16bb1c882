//! The one-file container every detector saves to: magic, format version, a JSON header, a
//! binary payload, and a CRC-32 of everything before it.
//!
//! ```text
//! magic [8] | u32 version | u64 header length | header | u64 payload length | payload | u32 crc32
//! ```
//! All integers little-endian. Readers check the magic, the version, the checksum and every
//! length before touching the contents, so a corrupt, truncated or foreign file is reported,
//! never half-read.

use std::io::Write;
use std::path::Path;

/// Reads the 8 magic bytes that open a model file (to pick the detector that can load it).
pub fn read_magic(path: &Path) -> std::io::Result<[u8; 8]> {
    let mut magic = [0u8; 8];
    let mut f = std::fs::File::open(path)?;
    std::io::Read::read_exact(&mut f, &mut magic)?;
    Ok(magic)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder is written,
/// flushed to disk and renamed over `path`, so a crash or a kill never leaves a truncated file
/// under the final name (the old file, if any, stays whole until the rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Assembles a container in memory.
pub fn encode(magic: &[u8; 8], version: u32, header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + header.len() + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Writes `header` (as JSON) and `payload` as one container under `path`, atomically: how
/// ad-core's own container models (tiled, ensemble) save.
pub(crate) fn save_json<H: serde::Serialize>(
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    header: &H,
    payload: &[u8],
) -> Result<(), crate::CoreError> {
    let json = serde_json::to_vec(header).map_err(|e| crate::CoreError::BadModelFile {
        path: path.to_path_buf(),
        reason: format!("cannot encode header: {e}"),
    })?;
    write_atomic(path, &encode(magic, version, &json, payload)).map_err(|source| {
        crate::CoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Reads a container written by [`save_json`]: its header parsed, the file's bytes and where
/// the payload lies in them (the payload is not copied).
pub(crate) fn read_json<H: serde::de::DeserializeOwned>(
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> Result<(H, Vec<u8>, std::ops::Range<usize>), crate::CoreError> {
    let bytes = std::fs::read(path).map_err(|source| crate::CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| crate::CoreError::BadModelFile {
        path: path.to_path_buf(),
        reason,
    };
    let (header, payload) = decode(&bytes, magic, version, what).map_err(bad)?;
    let header: H = serde_json::from_slice(header).map_err(|e| bad(format!("header: {e}")))?;
    let start = payload.as_ptr() as usize - bytes.as_ptr() as usize;
    let range = start..start + payload.len();
    Ok((header, bytes, range))
}

/// Checks a container and returns `(header, payload)`; the error says what is wrong, in words
/// (`what` names the model kind, e.g. "PatchCore").
pub fn decode<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> Result<(&'a [u8], &'a [u8]), String> {
    if bytes.len() < 8 + 4 + 8 + 8 + 4 {
        return Err(format!("{} bytes is too short", bytes.len()));
    }
    if &bytes[..8] != magic {
        return Err(format!("wrong magic bytes (not a {what} model)"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let found = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
    if found != version {
        return Err(format!(
            "format version {found}, this build reads version {version}"
        ));
    }
    if crc32fast::hash(body) != stored {
        return Err("checksum mismatch (file corrupt or truncated)".into());
    }
    let mut rest = &body[12..];
    let mut section = || -> Result<&'a [u8], String> {
        if rest.len() < 8 {
            return Err("section lengths exceed the file".into());
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&rest[..8]);
        let len = usize::try_from(u64::from_le_bytes(len))
            .ok()
            .filter(|&l| l <= rest.len() - 8)
            .ok_or_else(|| "section lengths exceed the file".to_string())?;
        let s = &rest[8..8 + len];
        rest = &rest[8 + len..];
        Ok(s)
    };
    let header = section()?;
    let payload = section()?;
    if !rest.is_empty() {
        return Err("trailing bytes after the payload".into());
    }
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"ADTEST\0\0";

    #[test]
    fn round_trip_and_every_corruption() {
        let bytes = encode(MAGIC, 3, b"{\"a\":1}", &[1, 2, 3, 4, 5]);
        let (h, p) = decode(&bytes, MAGIC, 3, "test").unwrap();
        assert_eq!((h, p), (&b"{\"a\":1}"[..], &[1u8, 2, 3, 4, 5][..]));
        let err = |b: &[u8]| decode(b, MAGIC, 3, "test").unwrap_err();
        assert!(err(&bytes[..10]).contains("too short"));
        assert!(err(&bytes[..bytes.len() - 1]).contains("checksum"));
        assert!(
            decode(&bytes, MAGIC, 4, "test")
                .unwrap_err()
                .contains("version 3")
        );
        assert!(
            decode(&bytes, b"ADOTHER\0", 3, "test")
                .unwrap_err()
                .contains("not a test")
        );
        let mut flipped = bytes.clone();
        flipped[22] ^= 1;
        assert!(err(&flipped).contains("checksum"));
        // A header length pointing past the end, with a valid checksum.
        let mut forged = bytes[..bytes.len() - 4].to_vec();
        forged[12] = 200;
        let crc = crc32fast::hash(&forged);
        forged.extend_from_slice(&crc.to_le_bytes());
        assert!(err(&forged).contains("exceed"));
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_reads_magic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        write_atomic(&path, &encode(MAGIC, 1, b"{}", &[7; 100])).unwrap();
        write_atomic(&path, &encode(MAGIC, 1, b"{}", &[9; 10])).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(decode(&bytes, MAGIC, 1, "test").unwrap().1, &[9; 10]);
        assert_eq!(&read_magic(&path).unwrap(), MAGIC);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A folder that does not exist fails without creating anything.
        assert!(write_atomic(&dir.path().join("no/such/m.bin"), b"x").is_err());
    }
}
