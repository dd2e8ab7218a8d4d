// Package clienttest holds the tests of awssig with real clients (the AWS
// CLI, boto3, signed aws-chunked uploads) against a real MinIO through a
// re-signing proxy. They sit apart from awssig so that its fuzz targets do
// not build the S3 SDK with fuzzing instrumentation.
package clienttest
