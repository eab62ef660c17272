//! What is uploaded: a file read with positional reads, bytes in memory, or an async byte stream.
//!
//! Random-access sources ([`ReadAt`]: [`FileSource`], [`BytesSource`]) let the engine read parts
//! in parallel with no shared cursor, and skip parts the server already holds. A stream
//! ([`StreamSource`]) is read once, in order, with a known or an unknown length.
//!
//! A [`Fingerprint`] (length, modification time, file identity, and a CRC-64 of the first and last
//! 64 KiB) is stored with the upload state. Resuming with a source whose fingerprint differs is an
//! error, and so is a file that changes while it is being read: a source that changes during an
//! upload must not become a new object made of two versions.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::hash::crc64::Crc64;
use crate::size::ByteSize;

/// The size of the head and tail samples in a file's fingerprint.
const SAMPLE: u64 = 64 * 1024;

/// What identifies a source's content cheaply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Length in bytes, when known.
    pub len: Option<u64>,
    /// Modification time, nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ns: Option<i128>,
    /// File identity (device and inode on Unix): a file replaced by another with the same name,
    /// size and time is still told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<(u64, u64)>,
    /// CRC-64 of the first and last 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_crc64: Option<u64>,
}

impl Fingerprint {
    /// Compares with a later fingerprint of the same source. A field the later one lacks (a
    /// quick fingerprint has no sample) is not compared; a field this one lacks but the later
    /// one has is an error: a saved state that omits what identifies its source (`"source": {}`)
    /// would otherwise match any file. The error says what changed or is missing.
    pub fn check(&self, now: &Fingerprint) -> Result<(), SourceChanged> {
        fn missing<T>(saved: &Option<T>, now: &Option<T>) -> bool {
            saved.is_none() && now.is_some()
        }
        for (absent, what) in [
            (missing(&self.len, &now.len), "size"),
            (missing(&self.file_id, &now.file_id), "file identity"),
            (missing(&self.modified_ns, &now.modified_ns), "modification time"),
            (missing(&self.sample_crc64, &now.sample_crc64), "content sample"),
        ] {
            if absent {
                return Err(SourceChanged(format!(
                    "the saved state does not record the source's {what}, so it cannot be told to be the same source"
                )));
            }
        }
        if let (Some(a), Some(b)) = (self.len, now.len)
            && a != b
        {
            return Err(SourceChanged(format!("its size went from {} to {}", ByteSize(a), ByteSize(b))));
        }
        if let (Some(a), Some(b)) = (self.file_id, now.file_id)
            && a != b
        {
            return Err(SourceChanged("it was replaced by another file".into()));
        }
        if let (Some(a), Some(b)) = (self.modified_ns, now.modified_ns)
            && a != b
        {
            return Err(SourceChanged("its modification time changed".into()));
        }
        if let (Some(a), Some(b)) = (self.sample_crc64, now.sample_crc64)
            && a != b
        {
            return Err(SourceChanged("its first or last 64 KiB changed".into()));
        }
        Ok(())
    }
}

/// The source is not the one the upload started with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the source changed since the upload started: {0}")]
pub struct SourceChanged(pub String);

/// A source that can read any range, from any thread, without a shared cursor. Reads block; the
/// engine calls them on tokio's blocking pool.
pub trait ReadAt: Send + Sync + fmt::Debug + 'static {
    /// Total length.
    fn len(&self) -> u64;

    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads exactly `len` bytes at `offset`. A source shorter than that is an error.
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;

    /// Fills `buf` from `offset`. The engine reads parts into recycled buffers through this, so
    /// a file source should read straight into `buf`; the default copies from `read_at`.
    fn read_into(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let bytes = self.read_at(offset, buf.len())?;
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    /// The fingerprint stored with the upload state (may read a little of the source).
    fn fingerprint(&self) -> io::Result<Fingerprint>;

    /// A fingerprint from metadata only, checked after each part is read.
    fn quick_fingerprint(&self) -> io::Result<Fingerprint> {
        Ok(Fingerprint { len: Some(self.len()), ..Fingerprint::default() })
    }
}

/// A file, read with positional reads (`pread` on Unix, `seek_read` on Windows).
#[derive(Debug)]
pub struct FileSource {
    file: std::fs::File,
    path: PathBuf,
    len: u64,
}

impl FileSource {
    /// Opens a file for reading.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(Self { file, path, len: meta.len() })
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            let (mut done, mut buf) = (0u64, buf);
            while !buf.is_empty() {
                match std::os::windows::fs::FileExt::seek_read(&self.file, buf, offset + done) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        buf = &mut buf[n..];
                        done += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    }
}

impl ReadAt for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = vec![0u8; len];
        self.read_into(offset, &mut buf)?;
        Ok(Bytes::from(buf))
    }

    fn read_into(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact_at(buf, offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(e.kind(), SourceChanged(format!("it ended before byte {}", offset + buf.len() as u64)))
            } else {
                e
            }
        })
    }

    fn quick_fingerprint(&self) -> io::Result<Fingerprint> {
        let meta = self.file.metadata()?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128);
        #[cfg(unix)]
        let file_id = {
            use std::os::unix::fs::MetadataExt;
            Some((meta.dev(), meta.ino()))
        };
        #[cfg(not(unix))]
        let file_id = None;
        Ok(Fingerprint { len: Some(meta.len()), modified_ns, file_id, sample_crc64: None })
    }

    fn fingerprint(&self) -> io::Result<Fingerprint> {
        let mut fp = self.quick_fingerprint()?;
        let len = fp.len.unwrap_or(self.len).min(self.len);
        let head = len.min(SAMPLE);
        let mut crc = Crc64::of(&self.read_at(0, head as usize)?);
        if len > head {
            let tail_start = (len - SAMPLE).max(head);
            crc.append(Crc64::of(&self.read_at(tail_start, (len - tail_start) as usize)?));
        }
        fp.sample_crc64 = Some(crc.crc);
        Ok(fp)
    }
}

/// Bytes already in memory. Parts are slices of it: no copy.
#[derive(Clone, Debug)]
pub struct BytesSource(pub Bytes);

impl ReadAt for BytesSource {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let end = start.checked_add(len).filter(|&e| e <= self.0.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
        Ok(self.0.slice(start..end))
    }

    fn fingerprint(&self) -> io::Result<Fingerprint> {
        Ok(Fingerprint { len: Some(self.len()), sample_crc64: Some(Crc64::of(&self.0).crc), ..Fingerprint::default() })
    }
}

/// An async byte stream, read once and in order, of known or unknown length.
pub struct StreamSource {
    reader: Pin<Box<dyn AsyncRead + Send>>,
    len: Option<u64>,
    position: u64,
}

impl fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSource").field("len", &self.len).field("position", &self.position).finish()
    }
}

impl StreamSource {
    /// A stream from an [`AsyncRead`]. With a known `len`, a stream that ends early or runs
    /// long is an error.
    pub fn from_reader(reader: impl AsyncRead + Send + 'static, len: Option<u64>) -> Self {
        Self { reader: Box::pin(reader), len, position: 0 }
    }

    /// A stream of byte chunks (for example a request body in a web framework).
    pub fn from_stream<S>(stream: S, len: Option<u64>) -> Self
    where
        S: futures_core::Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        Self::from_reader(tokio_util::io::StreamReader::new(stream), len)
    }

    /// Declared length, if any.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the stream is declared empty.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads up to `max` bytes: fewer only at the end of the stream.
    pub(crate) async fn read_part(&mut self, max: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::with_capacity(max);
        while buf.len() < max {
            let before = buf.len();
            let n = (&mut self.reader).take((max - before) as u64).read_buf(&mut buf).await?;
            if n == 0 {
                break;
            }
        }
        self.position += buf.len() as u64;
        if let Some(len) = self.len {
            let short = buf.len() < max && self.position < len;
            if self.position > len || short {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    SourceChanged(format!(
                        "the stream declared {} but gave {}",
                        ByteSize(len),
                        ByteSize(self.position)
                    )),
                ));
            }
            if self.position == len && !buf.is_empty() {
                // The declared end: a stream that goes on is not the source that was announced.
                let mut probe = [0u8; 1];
                if self.reader.read(&mut probe).await? > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        SourceChanged(format!("the stream declared {} but gave more", ByteSize(len))),
                    ));
                }
            }
        }
        Ok(buf.freeze())
    }
}

/// A source of an upload.
#[derive(Debug)]
pub enum Source {
    /// Random access: parts read in parallel, already uploaded parts skipped.
    ReadAt(Arc<dyn ReadAt>),
    /// A stream, read in order.
    Stream(StreamSource),
}

impl Source {
    /// A file, opened now.
    pub fn file(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::ReadAt(Arc::new(FileSource::open(path)?)))
    }

    /// Bytes in memory.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        Self::ReadAt(Arc::new(BytesSource(bytes.into())))
    }

    /// Any random-access source.
    pub fn read_at(source: impl ReadAt) -> Self {
        Self::ReadAt(Arc::new(source))
    }

    /// An async reader of known or unknown length.
    pub fn reader(reader: impl AsyncRead + Send + 'static, len: Option<u64>) -> Self {
        Self::Stream(StreamSource::from_reader(reader, len))
    }

    /// The total length, when known.
    pub fn len(&self) -> Option<u64> {
        match self {
            Source::ReadAt(r) => Some(r.len()),
            Source::Stream(s) => s.len(),
        }
    }

    /// Whether the source is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_source_reads_ranges_and_detects_changes() {
        let dir = std::env::temp_dir().join(format!("upload-core-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let src = FileSource::open(&path).unwrap();
        assert_eq!(src.len(), 200_000);
        assert_eq!(&src.read_at(150_000, 10).unwrap()[..], &data[150_000..150_010]);
        let fp = src.fingerprint().unwrap();
        assert!(fp.sample_crc64.is_some() && fp.modified_ns.is_some());
        assert_eq!(fp.check(&src.fingerprint().unwrap()), Ok(()));

        // Same size, other content at the end: the sample catches it.
        let mut changed = data.clone();
        changed[199_999] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        let now = FileSource::open(&path).unwrap().fingerprint().unwrap();
        let mut same_time = fp.clone();
        same_time.modified_ns = now.modified_ns;
        same_time.file_id = now.file_id;
        assert_eq!(same_time.check(&now).unwrap_err().0, "its first or last 64 KiB changed");

        // A saved fingerprint that leaves out what identifies the file matches nothing.
        let empty = Fingerprint::default();
        let err = empty.check(&now).unwrap_err();
        assert!(err.0.contains("does not record the source's size"), "{err}");
        let mut no_sample = now.clone();
        no_sample.sample_crc64 = None;
        assert!(no_sample.check(&now).unwrap_err().0.contains("content sample"));
        assert_eq!(now.check(&no_sample), Ok(()), "a quick fingerprint later is compared on what it has");

        // Shorter: the size check names both sizes, and a read past the end is a typed error.
        std::fs::write(&path, &data[..1024]).unwrap();
        let err = fp.check(&src.quick_fingerprint().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the source changed since the upload started: its size went from 200000 bytes to 1 KiB"
        );
        let err = src.read_at(150_000, 10).unwrap_err();
        assert!(err.get_ref().unwrap().is::<SourceChanged>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn stream_parts_and_declared_length() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut s = StreamSource::from_reader(std::io::Cursor::new(data.clone()), Some(10_000));
        assert_eq!(s.read_part(4096).await.unwrap(), &data[..4096]);
        assert_eq!(s.read_part(4096).await.unwrap(), &data[4096..8192]);
        assert_eq!(s.read_part(4096).await.unwrap(), &data[8192..]);
        assert!(s.read_part(4096).await.unwrap().is_empty());

        let mut short = StreamSource::from_reader(std::io::Cursor::new(data.clone()), Some(20_000));
        short.read_part(8192).await.unwrap();
        let err = short.read_part(8192).await.unwrap_err();
        assert!(err.to_string().contains("declared 20000 bytes but gave 10000 bytes"), "{err}");
    }
}
