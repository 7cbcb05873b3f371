package ec2

import (
	"errors"
	"strings"

	"github.com/aws/smithy-go"
)

// isNotFoundCode reports whether err is one of EC2's "<thing>.NotFound"
// answers (InvalidInstanceID.NotFound, InvalidAMIID.NotFound...).
func isNotFoundCode(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	c := apiErr.ErrorCode()
	return strings.HasSuffix(c, ".NotFound") || strings.HasSuffix(c, "NotFoundException") || strings.HasSuffix(c, ".Malformed")
}

// isThrottle reports whether err is EC2 asking the caller to slow down.
func isThrottle(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode() {
	case "RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestThrottled":
		return true
	}
	return false
}
