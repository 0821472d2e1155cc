//! The real S3 servers of the tests, started on loopback by kbs-testkit: moto (AWS
//! conditional-write semantics) and Garage (ignores conditional headers), each with the bucket
//! `kbs-test`, seen here as kbs-storage stores.

use std::sync::Arc;

use kbs_storage::{ObjectStorage, StorageOptions};
pub(crate) use kbs_testkit::{Garage, Moto};

/// An S3 server started by kbs-testkit, with its bucket.
pub(crate) trait S3Server {
    /// The bucket the server was started with.
    fn bucket(&self) -> &str;

    /// Options reaching the server with credentials it accepts.
    fn options(&self) -> StorageOptions;

    /// Opens `s3://bucket/<prefix>` on this server.
    async fn open(&self, prefix: &str, options: &StorageOptions) -> Arc<dyn ObjectStorage> {
        kbs_storage::open(&format!("s3://{}/{prefix}", self.bucket()), options)
            .await
            .unwrap()
    }
}

impl S3Server for Moto {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    /// moto accepts any credentials.
    fn options(&self) -> StorageOptions {
        StorageOptions::default()
            .with_s3_endpoint(self.endpoint())
            .with_s3_credentials("testing-key-id", "testing-secret")
    }
}

impl S3Server for Garage {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key kbs-testkit allowed on the bucket, in Garage's region.
    fn options(&self) -> StorageOptions {
        let mut options = StorageOptions::default()
            .with_s3_endpoint(self.endpoint())
            .with_s3_credentials(self.key_id.as_str(), self.secret.as_str());
        options.s3_region = Some(Garage::REGION.to_owned());
        options
    }
}
