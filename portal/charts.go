package portal

import (
	"context"
	"fmt"
	"math/big"
	"time"

	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// chart is one meter's usage per day of the month, drawn as SVG bars on the
// server, with its figures as a table for those who do not see it.
type chart struct {
	// ID names it in the page; Title is its message key.
	ID, Title string
	Unit      ratecard.Unit
	Days      []day
	// Max is the tallest bar's figure (decimal text), the scale's top.
	Max string
}

// day is one bar: its geometry in the chart's 0–100 × 0–40 box.
type day struct {
	Date  string // YYYY-MM-DD
	Label string // the day of the month
	// Value is the day's figure, as decimal text.
	Value      string
	X, Y, W, H float64
}

// chartMeters are the charts of the month page: what each rate-card meter
// was used, in its billing unit.
var chartMeters = []struct {
	id, title string
	meter     ratecard.Meter
	sources   []usage.Meter
}{
	{"cpu", "chart cpu", ratecard.CPU, []usage.Meter{usage.MeterCPU}},
	{"memory", "chart memory", ratecard.Memory, []usage.Meter{usage.MeterMemory}},
	{"storage", "chart storage", ratecard.Storage, []usage.Meter{usage.MeterStorageByteSeconds}},
	{"network", "chart network", ratecard.NetTx, []usage.Meter{usage.MeterNetTx, usage.MeterNetRx}},
}

// chartSources are the usage meters the charts draw.
func chartSources() []usage.Meter {
	var out []usage.Meter
	for _, cm := range chartMeters {
		out = append(out, cm.sources...)
	}
	return out
}

// usagePerDay reads tenant's usage per day of month up to now and draws it.
func (p *Portal) usagePerDay(ctx context.Context, tenant string, month calendar.Month, now time.Time) ([]chart, error) {
	to := month.End()
	if now.Before(to) {
		to = now
	}
	if !to.After(month.Start()) {
		return nil, nil
	}
	rows, err := p.o.Usage.QueryUsage(ctx, metering.UsageQuery{
		UsageFilter: metering.UsageFilter{Tenant: tenant, From: month.Start(), To: to, Meters: chartSources()},
		GroupBy:     []metering.Dimension{metering.ByDay}, Location: p.loc})
	if err != nil {
		return nil, fmt.Errorf("usage per day of %s: %w", tenant, err)
	}
	byDay := map[usage.Meter]map[string]*big.Int{}
	for _, r := range rows {
		if byDay[r.Meter] == nil {
			byDay[r.Meter] = map[string]*big.Int{}
		}
		byDay[r.Meter][r.Day] = r.Quantity.Big()
	}
	var days []time.Time
	for d := month.Start(); d.Before(to); d = d.AddDate(0, 0, 1) {
		days = append(days, d)
	}
	var out []chart
	for _, cm := range chartMeters {
		c := chart{ID: cm.id, Title: cm.title, Unit: cm.meter.Unit()}
		values := make([]*big.Rat, len(days))
		most := new(big.Rat)
		for i, d := range days {
			sum := new(big.Int)
			for _, src := range cm.sources {
				if q := byDay[src][d.Format(time.DateOnly)]; q != nil {
					sum.Add(sum, q)
				}
			}
			values[i] = new(big.Rat).SetFrac(sum, big.NewInt(cm.meter.Divisor()))
			if values[i].Cmp(most) > 0 {
				most = values[i]
			}
		}
		c.Max = most.FloatString(2)
		w := 100.0 / float64(len(days))
		for i, d := range days {
			h := 0.0
			if most.Sign() > 0 {
				f, _ := new(big.Rat).Quo(values[i], most).Float64()
				h = 38 * f
			}
			c.Days = append(c.Days, day{Date: d.Format(time.DateOnly), Label: fmt.Sprint(d.Day()), Value: values[i].FloatString(2),
				X: float64(i)*w + w*0.1, Y: 40 - h, W: w * 0.8, H: h})
		}
		out = append(out, c)
	}
	return out, nil
}
