//! Opening the storage named on the command line.

use std::sync::Arc;

use kbs_storage::{ObjectStorage, StorageOptions};

use crate::cli::StorageArgs;
use crate::error::CliError;

/// Storage options from the command line (credentials come from the AWS environment chain).
pub fn storage_options(args: &StorageArgs) -> Result<StorageOptions, CliError> {
    let mut options = StorageOptions::default();
    if let Some(endpoint) = &args.s3_endpoint {
        options = options.with_s3_endpoint(endpoint.clone());
    }
    options.s3_region = args.s3_region.clone();
    if args.s3_path_style {
        options.s3_path_style = Some(true);
    }
    options.s3_allow_http = args.s3_allow_http;
    if let Some(class) = &args.s3_storage_class {
        options.s3_storage_class = Some(
            class
                .parse()
                .map_err(|e: kbs_storage::Error| CliError::InvalidArgument {
                    flag: "s3-storage-class",
                    message: e.to_string(),
                })?,
        );
    }
    Ok(options)
}

/// The folder of a local storage root (a plain path or a `file://` URL); `None` for the
/// object stores.
pub fn local_root(root: &str) -> Option<std::path::PathBuf> {
    if let Some(path) = root.strip_prefix("file://") {
        return Some(path.into());
    }
    (!root.contains("://")).then(|| root.into())
}

/// Opens the storage root named by `args`.
pub async fn open(args: &StorageArgs) -> Result<Arc<dyn ObjectStorage>, CliError> {
    let options = storage_options(args)?;
    Ok(kbs_storage::open(&args.storage, &options).await?)
}

/// Opens the storage root named by `args`, telling `observer` of every retry.
pub async fn open_observed(
    args: &StorageArgs,
    observer: Arc<dyn kbs_storage::RetryObserver>,
) -> Result<Arc<dyn ObjectStorage>, CliError> {
    let mut options = storage_options(args)?;
    options.retry = options.retry.with_observer(observer);
    Ok(kbs_storage::open(&args.storage, &options).await?)
}
