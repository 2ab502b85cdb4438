package embedded_test

import (
	"context"
	"testing"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/metering/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) metering.Store {
		s, err := embedded.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, storetest.Capabilities{})
}
