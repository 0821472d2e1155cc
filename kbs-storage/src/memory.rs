//! The in-memory backend (`memory://`), for tests and examples.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, Range};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{Context, Operation, Result};
use crate::key::{join, validate_key, validate_prefix};
use crate::multipart::MultipartUpload;
use crate::storage::{
    Capabilities, CapabilitySource, GetOutcome, Listing, ObjectMeta, ObjectStorage, ObjectStream, ObjectVersion,
    PutOutcome, check_range,
};

/// How many keys one page of [`ObjectStorage::list`] takes from the map at a time (the lock is
/// released between pages).
const LIST_PAGE: usize = 1000;

/// The chunk size of [`ObjectStorage::get_stream`].
const STREAM_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Entry {
    data: Bytes,
    version: u64,
    modified: SystemTime,
}

#[derive(Default)]
struct Shared {
    objects: Mutex<BTreeMap<String, Entry>>,
    next_version: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is one
        // insert or remove), so a poisoned lock is still consistent.
        self.objects.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn new_entry(&self, data: Bytes) -> Entry {
        let version = self.next_version.fetch_add(1, Ordering::Relaxed) + 1;
        Entry {
            data,
            version,
            modified: SystemTime::now(),
        }
    }
}

/// An in-memory store: every operation is atomic under one lock. Each [`open`](crate::open) of
/// `memory://` creates a new, empty store.
#[derive(Default)]
pub(crate) struct MemoryStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("objects", &self.shared.lock().len())
            .finish()
    }
}

fn version_of(version: u64) -> ObjectVersion {
    ObjectVersion::new(format!("m{version}"))
}

fn meta_of(key: &str, entry: &Entry) -> ObjectMeta {
    ObjectMeta {
        key: key.to_owned(),
        size: entry.data.len() as u64,
        version: version_of(entry.version),
        last_modified: entry.modified,
    }
}

const DESCRIPTION: &str = "memory://";

impl MemoryStore {
    pub(crate) fn new() -> Self {
        MemoryStore::default()
    }

    fn cx<'a>(&self, operation: Operation, key: &'a str) -> Context<'a> {
        Context::new(DESCRIPTION, operation, key)
    }

    fn read(&self, operation: Operation, key: &str) -> Result<Entry> {
        let cx = self.cx(operation, key);
        validate_key(key)?;
        self.shared.lock().get(key).cloned().ok_or_else(|| cx.not_found())
    }
}

#[async_trait]
impl ObjectStorage for MemoryStore {
    fn describe(&self) -> &str {
        DESCRIPTION
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
        validate_key(key)?;
        let entry = self.shared.new_entry(data);
        let version = version_of(entry.version);
        self.shared.lock().insert(key.to_owned(), entry);
        Ok(PutOutcome { version })
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<PutOutcome> {
        validate_key(key)?;
        let mut objects = self.shared.lock();
        if objects.contains_key(key) {
            return Err(self.cx(Operation::PutIfAbsent, key).already_exists());
        }
        let entry = self.shared.new_entry(data);
        let version = version_of(entry.version);
        objects.insert(key.to_owned(), entry);
        Ok(PutOutcome { version })
    }

    async fn put_if_match(&self, key: &str, data: Bytes, expected: &ObjectVersion) -> Result<PutOutcome> {
        validate_key(key)?;
        let mut objects = self.shared.lock();
        match objects.get(key) {
            Some(current) if version_of(current.version) == *expected => {}
            _ => return Err(self.cx(Operation::PutIfMatch, key).precondition()),
        }
        let entry = self.shared.new_entry(data);
        let version = version_of(entry.version);
        objects.insert(key.to_owned(), entry);
        Ok(PutOutcome { version })
    }

    async fn get(&self, key: &str) -> Result<GetOutcome> {
        let entry = self.read(Operation::Get, key)?;
        Ok(GetOutcome {
            meta: meta_of(key, &entry),
            bytes: entry.data,
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let entry = self.read(Operation::GetRange, key)?;
        check_range(&self.cx(Operation::GetRange, key), &range, entry.data.len() as u64)?;
        // Both ends are within the object's length, which is a usize.
        Ok(entry.data.slice(range.start as usize..range.end as usize))
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream> {
        let entry = self.read(Operation::GetStream, key)?;
        let meta = meta_of(key, &entry);
        let data = entry.data;
        let chunks: Vec<Result<Bytes>> = (0..data.len())
            .step_by(STREAM_CHUNK)
            .map(|start| Ok(data.slice(start..(start + STREAM_CHUNK).min(data.len()))))
            .collect();
        Ok(ObjectStream {
            meta,
            chunks: stream::iter(chunks).boxed(),
        })
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let entry = self.read(Operation::Head, key)?;
        Ok(meta_of(key, &entry))
    }

    fn list(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let prefix = match validate_prefix(prefix) {
            Ok(prefix) => prefix.to_owned(),
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let shared = Arc::clone(&self.shared);
        // Keys under `prefix` are those starting with `prefix/` (or every key for "").
        let key_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let cursor = match start_after {
            Some(after) if after.as_bytes() >= key_prefix.as_bytes() => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(key_prefix.clone()),
        };
        // One page per step: take up to LIST_PAGE keys after the cursor, release the lock.
        stream::unfold(Some(cursor), move |cursor| {
            let shared = Arc::clone(&shared);
            let key_prefix = key_prefix.clone();
            async move {
                let cursor = cursor?;
                let page: Vec<ObjectMeta> = {
                    let objects = shared.lock();
                    objects
                        .range::<String, _>((cursor, Bound::Unbounded))
                        .take_while(|(key, _)| key.starts_with(&key_prefix))
                        .take(LIST_PAGE)
                        .map(|(key, entry)| meta_of(key, entry))
                        .collect()
                };
                if page.is_empty() {
                    return None;
                }
                let next = (page.len() == LIST_PAGE).then(|| Bound::Excluded(page[page.len() - 1].key.clone()));
                Some((stream::iter(page.into_iter().map(Ok)), next))
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: &str) -> Result<Listing> {
        let prefix = validate_prefix(prefix)?;
        let key_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let objects = self.shared.lock();
        let mut listing = Listing::default();
        let mut prefixes = BTreeSet::new();
        for (key, entry) in objects.range::<String, _>((Bound::Included(key_prefix.clone()), Bound::Unbounded)) {
            let Some(rest) = key.strip_prefix(&key_prefix) else {
                break;
            };
            match rest.split_once('/') {
                Some((dir, _)) => {
                    prefixes.insert(join(prefix, dir));
                }
                None => listing.objects.push(meta_of(key, entry)),
            }
        }
        listing.common_prefixes = prefixes.into_iter().collect();
        Ok(listing)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.shared.lock().remove(key);
        Ok(())
    }

    async fn start_multipart(&self, key: &str) -> Result<Box<dyn MultipartUpload>> {
        validate_key(key)?;
        Ok(Box::new(MemoryUpload {
            shared: Arc::clone(&self.shared),
            key: key.to_owned(),
            parts: Mutex::new(Some(BTreeMap::new())),
        }))
    }
}

/// Parts of a memory upload; `None` once completed or aborted.
struct MemoryUpload {
    shared: Arc<Shared>,
    key: String,
    parts: Mutex<Option<BTreeMap<usize, Bytes>>>,
}

impl std::fmt::Debug for MemoryUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryUpload")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl MemoryUpload {
    fn cx(&self, operation: Operation) -> Context<'_> {
        Context::new(DESCRIPTION, operation, &self.key)
    }

    fn parts(&self) -> MutexGuard<'_, Option<BTreeMap<usize, Bytes>>> {
        self.parts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl MultipartUpload for MemoryUpload {
    async fn put_part(&self, index: usize, data: Bytes) -> Result<()> {
        let mut parts = self.parts();
        let Some(parts) = parts.as_mut() else {
            return Err(self
                .cx(Operation::MultipartPart)
                .backend("the upload was completed or aborted", false));
        };
        parts.insert(index, data);
        Ok(())
    }

    async fn complete(&self) -> Result<PutOutcome> {
        let cx = self.cx(Operation::MultipartComplete);
        let Some(parts) = self.parts().take() else {
            return Err(cx.backend("the upload was completed or aborted", false));
        };
        if parts.keys().enumerate().any(|(expected, index)| expected != *index) {
            return Err(cx.backend("the uploaded parts are not numbered 0..n", false));
        }
        let mut data = Vec::with_capacity(parts.values().map(Bytes::len).sum());
        for part in parts.values() {
            data.extend_from_slice(part);
        }
        let entry = self.shared.new_entry(Bytes::from(data));
        let version = version_of(entry.version);
        self.shared.lock().insert(self.key.clone(), entry);
        Ok(PutOutcome { version })
    }

    async fn abort(&self) -> Result<()> {
        self.parts().take();
        Ok(())
    }
}
