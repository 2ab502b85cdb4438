package image

import (
	"strings"
	"testing"
)

func TestProgressReportsTheBuildsError(t *testing.T) {
	ok := `{"stream":"Step 1/3 : FROM scratch\n"}` + "\n" + `{"aux":{"ID":"sha256:1"}}` + "\n"
	if err := progress(strings.NewReader(ok)); err != nil {
		t.Errorf("a successful build: %v", err)
	}
	failed := `{"stream":"Step 3/3 : RUN x\n"}` + "\n" + `{"errorDetail":{"message":"exit 127"},"error":"The command '/bin/sh -c x' returned a non-zero code: 127"}` + "\n"
	if err := progress(strings.NewReader(failed)); err == nil || !strings.Contains(err.Error(), "non-zero code: 127") {
		t.Errorf("a failed build: %v", err)
	}
	if err := progress(strings.NewReader(`{"stream":`)); err == nil {
		t.Error("a broken stream was not reported")
	}
}
