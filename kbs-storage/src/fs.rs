//! The filesystem backend (`file:///abs/path` or a plain path).
//!
//! # Atomicity protocol
//!
//! An object is the file `<root>/<key>`. Every write goes through a temporary file in the
//! key's directory, named `.<name>.kbs-tmp-<pid>-<n>` (listing never returns such names):
//!
//! 1. create the temporary file (`O_EXCL`), write the bytes, `fsync` it;
//! 2. take the key's lock: an exclusive `flock` on `<root>/.kbs-locks/<hh>`, where `<hh>` is
//!    the CRC-32 of the key modulo 256 in hex (256 lock files, never deleted; the kernel drops
//!    the lock when the holder dies, so a `kill -9` leaves no stale lock);
//! 3. give the temporary file a modification time strictly after the current object's, with
//!    nanoseconds (this makes the version stamp change on every replacement);
//! 4. publish: `put`, `put_if_match` and multipart completion `rename(2)` the temporary file
//!    over the key; `put_if_absent` `link(2)`s it to the key (which fails atomically if the
//!    key exists) and unlinks the temporary name; `put_if_match` first checks the current
//!    version under the lock;
//! 5. `fsync` the directory, release the lock.
//!
//! So the final key only ever names a complete, `fsync`ed file: a writer killed at any point
//! leaves either the old object or the new one, plus at most a temporary file that listing
//! ignores. Directories are created on demand (and their parents `fsync`ed); `delete` takes the
//! lock, unlinks, `fsync`s and removes directories left empty.
//!
//! # Versions
//!
//! The version of an object is `<inode>-<size>-<mtime in ns>` in hex. Step 3 makes the
//! modification time of every replacement strictly greater than its predecessor's, so a
//! compare-and-swap can never mistake a new object for the one it read.
//!
//! # Limits
//!
//! A key cannot be both an object and a "directory" of other objects (`a` and `a/b`), which S3
//! allows. Symbolic links and names that are not valid key segments are skipped by listings.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{Context, Operation, Result};
use crate::key::{TEMP_MARKER, is_internal_name, join, validate_key, validate_prefix};
use crate::multipart::MultipartUpload;
use crate::storage::{
    Capabilities, CapabilitySource, GetOutcome, Listing, ObjectMeta, ObjectStorage, ObjectStream, ObjectVersion,
    PutOutcome, check_range,
};

/// How many objects one page of [`ObjectStorage::list`] reads before handing them out.
const LIST_PAGE: usize = 1000;

/// The chunk size of [`ObjectStorage::get_stream`].
const STREAM_CHUNK: usize = 1 << 20;

/// The name of the lock directory under the root.
const LOCK_DIR: &str = ".kbs-locks";

/// Temporary files get unique names from the process id and this counter.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A store in a local directory.
#[derive(Debug, Clone)]
pub(crate) struct FileSystemStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    description: String,
}

impl FileSystemStore {
    /// A store rooted at the absolute directory `root` (created on the first write).
    pub(crate) fn new(root: PathBuf) -> Self {
        let description = format!("file://{}", root.display());
        FileSystemStore {
            inner: Arc::new(Inner { root, description }),
        }
    }

    /// Runs `f` on the blocking thread pool.
    async fn blocking<T, F>(&self, operation: Operation, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &Context<'_>) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let owned_key = key.to_owned();
        let task = tokio::task::spawn_blocking(move || {
            let cx = Context::new(&inner.description, operation, &owned_key);
            f(&inner, &cx)
        });
        match task.await {
            Ok(result) => result,
            Err(join_error) => Err(Context::new(&self.inner.description, operation, key)
                .backend(format!("the filesystem task failed: {join_error}"), false)),
        }
    }

    /// Writes `data` to a temporary file next to `key` and publishes it with `publish` under the
    /// key's lock.
    async fn write_object(&self, operation: Operation, key: &str, data: Bytes, publish: Publish) -> Result<PutOutcome> {
        validate_key(key)?;
        self.blocking(operation, key, move |inner, cx| {
            let target = inner.object_path(cx.key);
            let mut temp = inner.create_temp(cx, &target)?;
            let written = temp.file.write_all(&data).and_then(|()| temp.file.sync_all());
            if let Err(e) = written {
                return Err(cx.io(e));
            }
            inner.publish(cx, temp, &target, publish)
        })
        .await
    }
}

/// How a temporary file becomes the object.
#[derive(Debug, Clone)]
enum Publish {
    /// `rename` over whatever is there.
    Replace,
    /// `link`, failing if the key exists.
    Create,
    /// Check the current version, then `rename`.
    ReplaceIf(ObjectVersion),
}

/// A temporary file; removed on drop unless published.
#[derive(Debug)]
struct TempFile {
    file: File,
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// An exclusive lock on a key (striped over 256 lock files), released on drop.
#[derive(Debug)]
struct KeyLock {
    _file: File,
}

impl Inner {
    fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Creates the directory `dir` (under the root) and any missing parents, `fsync`ing the
    /// parent of every directory it creates.
    fn create_dirs(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut cursor = dir;
        while !cursor.is_dir() {
            missing.push(cursor.to_path_buf());
            match cursor.parent() {
                Some(parent) => cursor = parent,
                None => break,
            }
        }
        for path in missing.into_iter().rev() {
            match fs::create_dir(&path) {
                Ok(()) => {
                    if let Some(parent) = path.parent() {
                        sync_dir(parent)?;
                    }
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists && path.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates a new temporary file in the directory of `target`, creating the directory if
    /// needed. Retries a few times if a concurrent `delete` removes the (empty) directory
    /// between its creation and the file's.
    fn create_temp(&self, cx: &Context<'_>, target: &Path) -> Result<TempFile> {
        let dir = target.parent().unwrap_or(&self.root);
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("object");
        // Keep temporary names well under the usual 255-byte name limit.
        let mut short = name;
        while short.len() > 96 {
            let mut end = 96.min(short.len() - 1);
            while !short.is_char_boundary(end) {
                end -= 1;
            }
            short = &short[..end];
        }
        let mut last_error = None;
        for _ in 0..8 {
            if let Err(e) = self.create_dirs(dir) {
                return Err(cx.io(e));
            }
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{short}{TEMP_MARKER}{}-{n}", std::process::id()));
            match OpenOptions::new().write(true).read(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        file,
                        path,
                        keep: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::NotFound => last_error = Some(e),
                Err(e) => return Err(cx.io(e)),
            }
        }
        Err(cx.io(last_error.unwrap_or_else(|| io::Error::other("could not create a temporary file"))))
    }

    /// Takes the exclusive lock of `key`, waiting for it.
    fn lock(&self, cx: &Context<'_>) -> Result<KeyLock> {
        let dir = self.root.join(LOCK_DIR);
        self.create_dirs(&dir).map_err(|e| cx.io(e))?;
        let stripe = crc32fast::hash(cx.key.as_bytes()) % 256;
        let path = dir.join(format!("{stripe:02x}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| cx.io(e))?;
        file.lock().map_err(|e| cx.io(e))?;
        Ok(KeyLock { _file: file })
    }

    /// Steps 2–5 of the protocol in the module docs.
    fn publish(&self, cx: &Context<'_>, mut temp: TempFile, target: &Path, publish: Publish) -> Result<PutOutcome> {
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        let _lock = self.lock(cx)?;
        let current = match fs::symlink_metadata(target) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(cx.io(e)),
        };
        match (&publish, &current) {
            (Publish::Create, Some(_)) => return Err(cx.already_exists()),
            (Publish::ReplaceIf(_), None) => return Err(cx.precondition()),
            (Publish::ReplaceIf(expected), Some(meta)) if version_of(meta) != *expected => {
                return Err(cx.precondition());
            }
            _ => {}
        }
        stamp_after(&temp.file, current.as_ref()).map_err(|e| cx.io(e))?;
        let meta = temp.file.metadata().map_err(|e| cx.io(e))?;
        match publish {
            Publish::Create => match fs::hard_link(&temp.path, target) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(cx.already_exists()),
                Err(e) => return Err(cx.io(e)),
            },
            Publish::Replace | Publish::ReplaceIf(_) => {
                fs::rename(&temp.path, target).map_err(|e| cx.io(e))?;
                temp.keep = true;
            }
        }
        // For `Create` the temporary name is unlinked by `temp`'s drop; the object keeps the inode.
        drop(temp);
        sync_dir(&dir).map_err(|e| cx.io(e))?;
        Ok(PutOutcome {
            version: version_of(&meta),
        })
    }

    fn open_object(&self, cx: &Context<'_>) -> Result<(File, ObjectMeta)> {
        let path = self.object_path(cx.key);
        // Symbolic links are not objects (listings skip them too).
        if fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink()) {
            return Err(cx.not_found());
        }
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                return Err(cx.not_found());
            }
            Err(e) => return Err(cx.io(e)),
        };
        let meta = file.metadata().map_err(|e| cx.io(e))?;
        if !meta.is_file() {
            return Err(cx.not_found());
        }
        Ok((file, object_meta(cx.key.to_owned(), &meta)))
    }

    fn delete(&self, cx: &Context<'_>) -> Result<()> {
        let path = self.object_path(cx.key);
        let _lock = self.lock(cx)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => return Ok(()),
            Err(e) => return Err(cx.io(e)),
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(cx.io(e)),
        }
        let mut dir = path.parent().map(Path::to_path_buf);
        if let Some(dir) = &dir {
            sync_dir(dir).map_err(|e| cx.io(e))?;
        }
        // Remove directories the delete left empty, up to (not including) the root.
        while let Some(current) = dir {
            if current == self.root || !current.starts_with(&self.root) {
                break;
            }
            if fs::remove_dir(&current).is_err() {
                break;
            }
            let parent = current.parent().map(Path::to_path_buf);
            if let Some(parent) = &parent {
                let _ = sync_dir(parent);
            }
            dir = parent;
        }
        Ok(())
    }

    /// Whether `dir` holds at least one object, at any depth.
    fn contains_object(&self, dir: &Path) -> io::Result<bool> {
        for entry in sorted_entries(dir)? {
            match entry.kind {
                EntryKind::File => return Ok(true),
                EntryKind::Dir => {
                    if self.contains_object(&dir.join(&entry.name))? {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    fn list_with_delimiter(&self, cx: &Context<'_>, prefix: &str) -> Result<Listing> {
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.root.join(prefix)
        };
        let entries = match sorted_entries(&dir) {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) => return Ok(Listing::default()),
            Err(e) => return Err(cx.io(e)),
        };
        let mut listing = Listing::default();
        for entry in entries {
            let key = join(prefix, &entry.name);
            let path = dir.join(&entry.name);
            match entry.kind {
                EntryKind::File => match fs::symlink_metadata(&path) {
                    Ok(meta) => listing.objects.push(object_meta(key, &meta)),
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(cx.io(e)),
                },
                EntryKind::Dir => match self.contains_object(&path) {
                    Ok(true) => listing.common_prefixes.push(key),
                    Ok(false) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(cx.io(e)),
                },
            }
        }
        // `sorted_entries` orders directories as `name/`; plain name order is wanted here.
        listing.common_prefixes.sort();
        listing.objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listing)
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// `fsync`s a directory so that entries created, renamed or removed in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Sets the modification time of `file` to now, or to just after `current`'s if that is not
/// earlier (clock steps, coarse clocks), and checks the filesystem kept the difference.
fn stamp_after(file: &File, current: Option<&fs::Metadata>) -> io::Result<()> {
    let now = SystemTime::now();
    let Some(previous) = current.map(fs::Metadata::modified).transpose()? else {
        return file.set_modified(now);
    };
    for step in [
        Duration::from_nanos(1),
        Duration::from_micros(1),
        Duration::from_millis(1),
        Duration::from_secs(2),
    ] {
        let candidate = if now > previous {
            now.max(previous + step)
        } else {
            previous + step
        };
        file.set_modified(candidate)?;
        if file.metadata()?.modified()? > previous {
            return Ok(());
        }
    }
    Err(io::Error::other(
        "the filesystem does not keep modification times precise enough to version objects",
    ))
}

fn version_of(meta: &fs::Metadata) -> ObjectVersion {
    let nanos = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    ObjectVersion::new(format!("{:x}-{:x}-{:x}", meta.ino(), meta.size(), nanos))
}

fn object_meta(key: String, meta: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        key,
        size: meta.len(),
        version: version_of(meta),
        last_modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File,
    Dir,
}

#[derive(Debug)]
struct DirEntry {
    name: String,
    kind: EntryKind,
}

/// The visible entries of `dir` (regular files and directories whose names are valid key
/// segments and not internal), sorted so that a depth-first walk yields keys in lexicographic
/// order: a directory `a` sorts as `a/`.
fn sorted_entries(dir: &Path) -> io::Result<Vec<DirEntry>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(e),
        };
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!(dir = %dir.display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if is_internal_name(&name) || validate_key(&name).is_err() {
            continue;
        }
        let kind = match entry.file_type() {
            Ok(t) if t.is_file() => EntryKind::File,
            Ok(t) if t.is_dir() => EntryKind::Dir,
            Ok(_) => continue,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(e),
        };
        entries.push(DirEntry { name, kind });
    }
    entries.sort_by_key(sort_name);
    Ok(entries)
}

fn sort_name(entry: &DirEntry) -> String {
    match entry.kind {
        EntryKind::File => entry.name.clone(),
        EntryKind::Dir => format!("{}/", entry.name),
    }
}

/// A depth-first walk over the objects under a directory, in key order, resumable page by page.
#[derive(Debug)]
struct Walker {
    inner: Arc<Inner>,
    /// Directories being walked: their key prefix and the entries not yet visited (reversed, so
    /// the next one is at the end).
    stack: Vec<(String, Vec<DirEntry>)>,
    start_after: Option<String>,
    started: bool,
    prefix: String,
}

impl Walker {
    fn next_page(&mut self) -> io::Result<Vec<ObjectMeta>> {
        if !self.started {
            self.started = true;
            let dir = if self.prefix.is_empty() {
                self.inner.root.clone()
            } else {
                self.inner.root.join(&self.prefix)
            };
            match sorted_entries(&dir) {
                Ok(mut entries) => {
                    entries.reverse();
                    self.stack.push((self.prefix.clone(), entries));
                }
                Err(e) if is_missing(&e) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        let mut page = Vec::new();
        while page.len() < LIST_PAGE {
            let Some((dir_key, entries)) = self.stack.last_mut() else {
                break;
            };
            let Some(entry) = entries.pop() else {
                self.stack.pop();
                continue;
            };
            let key = join(dir_key, &entry.name);
            let path = self.inner.object_path(&key);
            match entry.kind {
                EntryKind::File => {
                    if self.start_after.as_deref().is_some_and(|after| key.as_str() <= after) {
                        continue;
                    }
                    match fs::symlink_metadata(&path) {
                        Ok(meta) if meta.is_file() => page.push(object_meta(key, &meta)),
                        Ok(_) => {}
                        Err(e) if is_missing(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                EntryKind::Dir => {
                    // Skip a directory whose keys all sort before `start_after`.
                    let dir_prefix = format!("{key}/");
                    if let Some(after) = self.start_after.as_deref()
                        && after > dir_prefix.as_str()
                        && !after.starts_with(&dir_prefix)
                    {
                        continue;
                    }
                    match sorted_entries(&path) {
                        Ok(mut entries) => {
                            entries.reverse();
                            self.stack.push((key, entries));
                        }
                        Err(e) if is_missing(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl ObjectStorage for FileSystemStore {
    fn describe(&self) -> &str {
        &self.inner.description
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_create: true,
            conditional_update: true,
            source: CapabilitySource::Native,
            min_part_size: 1,
        }
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        self.write_object(Operation::Put, key, data, Publish::Replace).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        self.write_object(Operation::PutIfAbsent, key, data, Publish::Create)
            .await
    }

    async fn put_if_match(&self, key: &str, data: Bytes, expected: &ObjectVersion) -> Result<PutOutcome> {
        self.write_object(Operation::PutIfMatch, key, data, Publish::ReplaceIf(expected.clone()))
            .await
    }

    async fn get(&self, key: &str) -> Result<GetOutcome> {
        validate_key(key)?;
        self.blocking(Operation::Get, key, |inner, cx| {
            let (mut file, meta) = inner.open_object(cx)?;
            let size = usize::try_from(meta.size).map_err(|_| cx.backend("the object is too big for memory", false))?;
            let mut data = Vec::with_capacity(size);
            file.read_to_end(&mut data).map_err(|e| cx.io(e))?;
            if data.len() != size {
                return Err(cx.inconsistent(format!("read {} bytes of an object of {size}", data.len()), true));
            }
            Ok(GetOutcome {
                meta,
                bytes: Bytes::from(data),
            })
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        validate_key(key)?;
        self.blocking(Operation::GetRange, key, move |inner, cx| {
            let (mut file, meta) = inner.open_object(cx)?;
            check_range(cx, &range, meta.size)?;
            // Within the object, whose size fits the address space only if it was written from
            // memory; read_exact fails cleanly otherwise.
            let len =
                usize::try_from(range.end - range.start).map_err(|_| cx.invalid_range(range.clone(), meta.size))?;
            let mut data = vec![0; len];
            file.seek(SeekFrom::Start(range.start)).map_err(|e| cx.io(e))?;
            file.read_exact(&mut data).map_err(|e| cx.io(e))?;
            Ok(Bytes::from(data))
        })
        .await
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream> {
        validate_key(key)?;
        let (file, meta) = self
            .blocking(Operation::GetStream, key, |inner, cx| inner.open_object(cx))
            .await?;
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        let state = Some((file, meta.size));
        let chunks = stream::unfold(state, move |state| {
            let inner = Arc::clone(&inner);
            let key = key.clone();
            async move {
                let (mut file, remaining) = state?;
                if remaining == 0 {
                    return None;
                }
                let want = remaining.min(STREAM_CHUNK as u64) as usize;
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0; want];
                    let result = file.read_exact(&mut buf);
                    (file, buf, result)
                })
                .await;
                let cx = Context::new(&inner.description, Operation::GetStream, &key);
                match read {
                    Ok((file, buf, Ok(()))) => Some((Ok(Bytes::from(buf)), Some((file, remaining - want as u64)))),
                    Ok((_, _, Err(e))) => Some((Err(cx.io(e)), None)),
                    Err(e) => Some((Err(cx.backend(format!("the filesystem task failed: {e}"), false)), None)),
                }
            }
        })
        .boxed();
        Ok(ObjectStream { meta, chunks })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        validate_key(key)?;
        self.blocking(Operation::Head, key, |inner, cx| {
            match fs::symlink_metadata(inner.object_path(cx.key)) {
                Ok(meta) if meta.is_file() => Ok(object_meta(cx.key.to_owned(), &meta)),
                Ok(_) => Err(cx.not_found()),
                Err(e) if is_missing(&e) => Err(cx.not_found()),
                Err(e) => Err(cx.io(e)),
            }
        })
        .await
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let prefix = match validate_prefix(prefix) {
            Ok(prefix) => prefix.to_owned(),
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let walker = Walker {
            inner: Arc::clone(&self.inner),
            stack: Vec::new(),
            start_after: start_after.map(str::to_owned),
            started: false,
            prefix: prefix.clone(),
        };
        let description = self.inner.description.clone();
        stream::unfold(Some(walker), move |walker| {
            let description = description.clone();
            let prefix = prefix.clone();
            async move {
                let mut walker = walker?;
                let page = tokio::task::spawn_blocking(move || {
                    let page = walker.next_page();
                    (walker, page)
                })
                .await;
                let cx = Context::new(&description, Operation::List, &prefix);
                match page {
                    Ok((_, Ok(page))) if page.is_empty() => None,
                    Ok((walker, Ok(page))) => Some((stream::iter(page.into_iter().map(Ok)).boxed(), Some(walker))),
                    Ok((_, Err(e))) => Some((stream::once(futures::future::ready(Err(cx.io(e)))).boxed(), None)),
                    Err(e) => {
                        let error = cx.backend(format!("the filesystem task failed: {e}"), false);
                        Some((stream::once(futures::future::ready(Err(error))).boxed(), None))
                    }
                }
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: &str) -> Result<Listing> {
        let prefix = validate_prefix(prefix)?.to_owned();
        self.blocking(Operation::List, &prefix.clone(), move |inner, cx| {
            inner.list_with_delimiter(cx, &prefix)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.blocking(Operation::Delete, key, |inner, cx| inner.delete(cx))
            .await
    }

    async fn start_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        validate_key(key)?;
        let temp = self
            .blocking(Operation::MultipartStart, key, |inner, cx| {
                let target = inner.object_path(cx.key);
                inner.create_temp(cx, &target)
            })
            .await?;
        Ok(Box::new(FsUpload {
            inner: Arc::clone(&self.inner),
            key: key.to_owned(),
            state: Arc::new(Mutex::new(Some(UploadState {
                temp,
                parts: Vec::new(),
            }))),
        }))
    }
}

/// A multipart upload into one temporary file; parts are written at their offsets.
#[derive(Debug)]
struct FsUpload {
    inner: Arc<Inner>,
    key: String,
    /// `None` once completed or aborted. Dropping the state removes the temporary file.
    state: Arc<Mutex<Option<UploadState>>>,
}

#[derive(Debug)]
struct UploadState {
    temp: TempFile,
    /// Offset and length of every part written, by part number.
    parts: Vec<(u64, u64)>,
}

fn lock_state(state: &Mutex<Option<UploadState>>) -> MutexGuard<'_, Option<UploadState>> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FsUpload {
    async fn blocking<T, F>(&self, operation: Operation, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &Context<'_>, &Mutex<Option<UploadState>>) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let state = Arc::clone(&self.state);
        let key = self.key.clone();
        let task = tokio::task::spawn_blocking(move || {
            let cx = Context::new(&inner.description, operation, &key);
            f(&inner, &cx, &state)
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(Context::new(&self.inner.description, operation, &self.key)
                .backend(format!("the filesystem task failed: {e}"), false)),
        }
    }
}

#[async_trait]
impl MultipartUpload for FsUpload {
    async fn put_part(&self, index: usize, data: Bytes) -> Result<()> {
        self.blocking(Operation::MultipartPart, move |_, cx, state| {
            let mut guard = lock_state(state);
            let Some(state) = guard.as_mut() else {
                return Err(cx.backend("the upload was completed or aborted", false));
            };
            let len = data.len() as u64;
            let offset = match index.cmp(&state.parts.len()) {
                std::cmp::Ordering::Equal => state.parts.last().map_or(0, |(offset, len)| offset + len),
                std::cmp::Ordering::Less if index + 1 == state.parts.len() => {
                    // Rewriting the last part (a retry): cut the file back to its start.
                    let offset = state.parts[index].0;
                    state.temp.file.set_len(offset).map_err(|e| cx.io(e))?;
                    state.parts.pop();
                    offset
                }
                std::cmp::Ordering::Less if state.parts[index].1 == len => state.parts[index].0,
                _ => {
                    return Err(cx.backend(
                        format!(
                            "the filesystem backend takes parts in order; got part {index} after {}",
                            state.parts.len()
                        ),
                        false,
                    ));
                }
            };
            let file = &mut state.temp.file;
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.write_all(&data))
                .map_err(|e| cx.io(e))?;
            if index == state.parts.len() {
                state.parts.push((offset, len));
            }
            Ok(())
        })
        .await
    }

    async fn complete(&self) -> Result<PutOutcome> {
        self.blocking(Operation::MultipartComplete, |inner, cx, state| {
            let Some(state) = lock_state(state).take() else {
                return Err(cx.backend("the upload was completed or aborted", false));
            };
            let UploadState { temp, parts } = state;
            let total = parts.last().map_or(0, |(offset, len)| offset + len);
            temp.file
                .set_len(total)
                .and_then(|()| temp.file.sync_all())
                .map_err(|e| cx.io(e))?;
            let target = inner.object_path(cx.key);
            inner.publish(cx, temp, &target, Publish::Replace)
        })
        .await
    }

    async fn abort(&self) -> Result<()> {
        // Dropping the state removes the temporary file.
        let state = lock_state(&self.state).take();
        drop(state);
        Ok(())
    }
}

/// Used by `open` to check that the root is not an existing non-directory.
pub(crate) fn check_root(root: &Path) -> std::result::Result<(), String> {
    match fs::metadata(root) {
        Ok(meta) if !meta.is_dir() => Err("it exists and is not a directory".to_owned()),
        _ => Ok(()),
    }
}

/// Keys of the objects under `root` in a `BTreeMap`, for tests.
#[cfg(test)]
fn tree(root: &Path) -> std::collections::BTreeMap<String, u64> {
    let store = FileSystemStore::new(root.to_path_buf());
    let mut walker = Walker {
        inner: Arc::clone(&store.inner),
        stack: Vec::new(),
        start_after: None,
        started: false,
        prefix: String::new(),
    };
    let mut out = std::collections::BTreeMap::new();
    loop {
        let page = walker.next_page().unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page.into_iter().map(|m| (m.key, m.size)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_order_is_lexicographic() {
        let dir = tempfile::tempdir().unwrap();
        for key in ["a-c", "a/b", "a/c/d", "a0", "b", "a/b-x"] {
            let path = dir.path().join(key);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, key).unwrap();
        }
        fs::write(dir.path().join("a/.b.kbs-tmp-1-1"), "temp").unwrap();
        fs::create_dir_all(dir.path().join(LOCK_DIR)).unwrap();
        fs::write(dir.path().join(LOCK_DIR).join("00"), "").unwrap();
        let store = FileSystemStore::new(dir.path().to_path_buf());
        let mut walker = Walker {
            inner: Arc::clone(&store.inner),
            stack: Vec::new(),
            start_after: None,
            started: false,
            prefix: String::new(),
        };
        let keys: Vec<String> = walker.next_page().unwrap().into_iter().map(|m| m.key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys, ["a-c", "a/b", "a/b-x", "a/c/d", "a0", "b"]);
        assert_eq!(tree(dir.path()).len(), 6);
    }

    #[test]
    fn stamps_strictly_increase() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, "x").unwrap();
        fs::write(&b, "x").unwrap();
        let future = SystemTime::now() + Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(future)
            .unwrap();
        let file_b = File::options().write(true).open(&b).unwrap();
        stamp_after(&file_b, Some(&fs::metadata(&a).unwrap())).unwrap();
        assert!(fs::metadata(&b).unwrap().modified().unwrap() > future);
    }
}
