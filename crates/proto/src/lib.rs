//! Generated gRPC and protobuf types for every Rookery service.
//!
//! The `.proto` sources live in `proto/` at the workspace root, one package per service
//! (`rookery.users.v1`, ...). Code is generated into `OUT_DIR` by `build.rs`; nothing
//! generated is checked in.

#![allow(clippy::all, unused_qualifications, missing_docs)]

/// `rookery.users.v1`: accounts, credentials, OAuth apps and tokens.
pub mod users {
    /// Version 1 of the users API.
    pub mod v1 {
        tonic::include_proto!("rookery.users.v1");
    }
}

/// `rookery.timeline.v1`: statuses, interactions, hashtags, timelines, trends, search.
pub mod timeline {
    /// Version 1 of the timeline API.
    pub mod v1 {
        tonic::include_proto!("rookery.timeline.v1");
    }
}

/// `rookery.notifications.v1`: notifications, their groups, unread counts, markers.
pub mod notifications {
    /// Version 1 of the notifications API.
    pub mod v1 {
        tonic::include_proto!("rookery.notifications.v1");
    }
}

/// `rookery.media.v1`: uploads, processing, stored files.
pub mod media {
    /// Version 1 of the media API.
    pub mod v1 {
        tonic::include_proto!("rookery.media.v1");
    }
}
