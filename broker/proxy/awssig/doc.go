// Package awssig verifies AWS Signature Version 4 requests signed with a
// session's placeholder credentials and re-signs them with the real ones,
// so that an agent in a sandbox can use every AWS SDK and CLI without ever
// holding a real key (proxy delivery, issue 15).
//
// What is accepted:
//   - the Authorization header form of SigV4 (AWS4-HMAC-SHA256) with the
//     placeholder access key id, the placeholder session token, an
//     X-Amz-Date within MaxSkew of now and a signature that verifies with
//     the placeholder secret over the headers the client signed;
//   - for S3, the payload modes a client may choose: a SHA-256 hex of the
//     body (S3 itself checks the body against it), UNSIGNED-PAYLOAD,
//     STREAMING-UNSIGNED-PAYLOAD-TRAILER (aws-chunked without chunk
//     signatures, what newer AWS CLIs and SDKs send over HTTPS), and
//     STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] (aws-chunked with a
//     signature chained through every chunk: each chunk is verified
//     against the placeholder chain and re-signed with the real chain as
//     the body streams);
//   - for every other service, the payload hash is the SHA-256 of the body,
//     which is read (up to MaxBody), hashed and restored.
//
// What is refused, with a *RefusedError whose reason holds no secret:
// presigned URLs (X-Amz-Signature in the query) made in the sandbox are not
// re-signed: a presigned URL is handed to someone else to use later, outside
// the session's gateway, so a re-signed one would carry the real
// credentials out of the sandbox; presign outside the sandbox instead.
// Also refused: SigV2, SigV4a (AWS4-ECDSA-P256-SHA256), any other key,
// token or signature, a skewed date, a malformed header.
//
// Re-signing keeps the set of headers the client signed (headers it did not
// sign, such as User-Agent or hop-by-hop headers, stay unsigned so a proxy
// may change them), the region and service of its credential scope and its
// payload hash mode, and signs at the current time with aws-sdk-go-v2's
// aws/signer/v4. Resign must be the last change to the request's headers,
// path, query and Host before it is sent upstream.
package awssig
