//! The tonic adapter of [`Media`]: proto in, proto out, errors through `From<Error>`.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use rookery_proto::media::v1::{self as pb, media_server::Media as MediaApi};
use tonic::{Request, Response, Status, Streaming};

use crate::service::Media;

/// Bytes per message of a file being read (gRPC's default message limit is 4 MiB).
const READ_CHUNK: usize = 256 * 1024;

/// The gRPC face of the media service.
pub struct MediaGrpc(pub Arc<Media>);

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadChunk, Status>> + Send>>;

#[tonic::async_trait]
impl MediaApi for MediaGrpc {
    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadChunk>>,
    ) -> Result<Response<pb::Attachment>, Status> {
        Ok(Response::new(self.0.upload(request.into_inner()).await?))
    }

    async fn get(
        &self,
        request: Request<pb::AttachmentRequest>,
    ) -> Result<Response<pb::Attachment>, Status> {
        let r = request.into_inner();
        Ok(Response::new(self.0.get(r.account_id, r.id).await?))
    }

    async fn get_many(
        &self,
        request: Request<pb::GetManyRequest>,
    ) -> Result<Response<pb::Attachments>, Status> {
        let attachments = self.0.get_many(&request.into_inner().ids).await?;
        Ok(Response::new(pb::Attachments { attachments }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Attachment>, Status> {
        Ok(Response::new(self.0.update(&request.into_inner()).await?))
    }

    async fn delete(
        &self,
        request: Request<pb::AttachmentRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        self.0.delete(r.account_id, r.id).await?;
        Ok(Response::new(pb::Empty {}))
    }

    type ReadStream = ReadStream;

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let (key, reading) = self.0.read(&request.into_inner()).await?;
        let header = pb::ReadChunk {
            part: Some(pb::read_chunk::Part::Header(pb::ReadHeader {
                size: reading.size,
                content_type: reading.content_type.to_owned(),
                offset: reading.range.start,
                length: reading.range.end - reading.range.start,
                key,
                unsatisfiable: reading.unsatisfiable,
            })),
        };
        // The store's chunks can be large (a whole local file): re-cut them.
        let body = reading.body.flat_map(|chunk| {
            let parts: Vec<Result<pb::ReadChunk, Status>> = match chunk {
                Ok(bytes) => (0..bytes.len())
                    .step_by(READ_CHUNK)
                    .map(|at| {
                        let end = (at + READ_CHUNK).min(bytes.len());
                        Ok(pb::ReadChunk {
                            part: Some(pb::read_chunk::Part::Data(bytes.slice(at..end))),
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(Status::from(e))],
            };
            futures::stream::iter(parts)
        });
        let stream = futures::stream::once(async move { Ok(header) }).chain(body);
        Ok(Response::new(Box::pin(stream)))
    }
}
