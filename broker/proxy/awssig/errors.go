package awssig

// RefusedError is why a request was not re-signed. Reason is safe to show
// to the agent and to log: it never holds a key, token or signature.
type RefusedError struct {
	// Code is the AWS error code that fits (SignatureDoesNotMatch,
	// InvalidAccessKeyId, RequestTimeTooSkewed, AccessDenied, ...), for a
	// gateway answering in AWS's error format.
	Code string
	// Reason says what was wrong and, where the agent can, how to fix it.
	Reason string
}

// Error implements error.
func (e *RefusedError) Error() string { return "aws sigv4: request refused: " + e.Reason }

func refuse(code, reason string) *RefusedError { return &RefusedError{Code: code, Reason: reason} }

// Codes of RefusedError.
const (
	CodeSignatureDoesNotMatch = "SignatureDoesNotMatch"
	CodeInvalidAccessKeyID    = "InvalidAccessKeyId"
	CodeInvalidToken          = "InvalidToken"
	CodeRequestTimeTooSkewed  = "RequestTimeTooSkewed"
	CodeAccessDenied          = "AccessDenied"
	CodeInvalidRequest        = "InvalidRequest"
)
