package portal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/internal/golden"
	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/locale"
)

// chrome is a headless Debian Chromium driven by chromedp.
type chrome struct {
	t   *testing.T
	ctx context.Context
	axe string
}

func newChrome(t *testing.T) *chrome {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Missing(t, "chromium is not installed: `make test` installs it, or apt-get install chromium")
	}
	axe, err := os.ReadFile(filepath.Join("testdata", "axe-core", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 900),
		// The tests run as root, where Chromium's sandbox cannot start.
		chromedp.NoSandbox, chromedp.Flag("lang", "en-GB"))
	ctx, cancelTimeout := context.WithTimeout(context.Background(), 4*time.Minute)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancelTimeout() })
	return &chrome{t: t, ctx: browser, axe: string(axe)}
}

func (c *chrome) run(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx, steps...); err != nil {
		c.t.Fatal(err)
	}
}

// value runs an action that answers a value.
func value[T any](c *chrome, a chromedp.Action[T]) T {
	c.t.Helper()
	v, err := chromedp.Run(c.ctx, a)
	if err != nil {
		c.t.Fatal(err)
	}
	return v
}

// eval is the value of a JavaScript expression in the page, its promise awaited.
func eval[T any](c *chrome, expr string) T {
	c.t.Helper()
	return value(c, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// violation is one of axe-core's.
type violation struct {
	ID, Impact, Help string
	Nodes            []struct {
		Target []string
		HTML   string
	}
}

// accessible runs axe-core's WCAG 2.1 A and AA rules on the page shown.
func (c *chrome) accessible(name string) {
	c.t.Helper()
	if !eval[bool](c, "typeof axe === 'object'") {
		eval[bool](c, c.axe+";\ntrue")
	}
	got := eval[[]violation](c, `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
		.then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
			nodes: v.nodes.map(n => ({target: n.target, html: n.html}))})))`)
	for _, v := range got {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprintf("%v %s", n.Target, n.HTML))
		}
		c.t.Errorf("%s: axe-core: %s (%s): %s\n  %s", name, v.ID, v.Impact, v.Help, strings.Join(where, "\n  "))
	}
}

// screenshot writes the page shown to docs/portal/name.png when the
// golden files are being updated (-update): pictures for people, not a
// comparison.
func (c *chrome) screenshot(name string) {
	c.t.Helper()
	if !golden.Updating() {
		return
	}
	png := value(c, chromedp.FullScreenshot(100)) // 100: PNG; less is JPEG
	if err := os.WriteFile(filepath.Join("..", "docs", "portal", name+".png"), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// download clicks the link sel matches, as a person would, and returns
// the file the browser saved.
func (c *chrome) download(sel string) []byte {
	c.t.Helper()
	dir := c.t.TempDir()
	progress := chromedp.Events(c.ctx, cdpbrowser.DownloadProgress)
	events := true
	c.run(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &events})
		return err
	}), chromedp.Click(chromedp.CSS(sel)))
	for ev, err := range progress {
		if err != nil {
			c.t.Fatal(err)
		}
		switch ev.State {
		case cdpbrowser.DownloadProgressStateCompleted:
			b, err := os.ReadFile(filepath.Join(dir, ev.GUID))
			if err != nil {
				c.t.Fatal(err)
			}
			return b
		case cdpbrowser.DownloadProgressStateCanceled:
			c.t.Fatalf("the download of %s was canceled", sel)
		}
	}
	c.t.Fatalf("no download of %s", sel)
	return nil
}

// text is the text of the first element sel matches.
func (c *chrome) text(sel string) string {
	c.t.Helper()
	return strings.TrimSpace(value(c, chromedp.Text(chromedp.CSS(sel))))
}

// signIn signs in from the login form by keyboard alone.
func (c *chrome) signIn(base, token string) {
	c.t.Helper()
	c.run(chromedp.Navigate(base+"/portal/login"), chromedp.WaitVisible(chromedp.ID("token")))
	// Tab from the page's start reaches the token field; Enter submits.
	for i := 0; ; i++ {
		c.run(chromedp.KeyEvent(kb.Tab))
		if eval[string](c, `document.activeElement.id`) == "token" {
			break
		}
		if i == 10 {
			c.t.Fatal("ten Tab presses from the top of the login page never reach the token field")
		}
	}
	c.run(chromedp.KeyEvent(token+kb.Enter), chromedp.WaitVisible(chromedp.ID("payable")))
}

// signInWithIdP signs in through the OpenID Connect provider's own form.
func (c *chrome) signInWithIdP(base, person string) {
	c.t.Helper()
	c.run(chromedp.Navigate(base+"/portal/login"), chromedp.Click(chromedp.ID("idp")), chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), person), chromedp.SendKeys(chromedp.ID("password"), personPassword+kb.Enter),
		chromedp.WaitVisible(chromedp.ID("payable")))
}

func TestThePortalInChromium(t *testing.T) {
	c := newChrome(t)
	e := newEnv(t, withIdP(t))
	base := e.srv.URL
	payable := e.draftPayable(t, "caami").StringFixed(2)

	c.signInWithIdP(base, "claire")
	for _, l := range locale.Langs() {
		c.run(chromedp.Navigate(base + "/portal/caami/?lang=" + string(l)))
		if got, want := c.text("#payable"), l.Money(payable, "EUR"); got != strings.TrimSpace(want) {
			t.Errorf("%s: the month so far shows %q, the draft's payable is %q", l, got, want)
		}
		c.accessible(string(l) + " month so far")
		c.screenshot("month-" + string(l))
		c.run(chromedp.Navigate(base + "/portal/caami/sla"))
		c.accessible(string(l) + " availability")
		c.screenshot("sla-" + string(l))
		c.run(chromedp.Navigate(base + "/portal/caami/invoices"))
		c.accessible(string(l) + " invoices (none yet)")
		c.run(chromedp.Navigate(base + "/portal/login"))
		c.accessible(string(l) + " sign-in")
	}
	c.run(chromedp.Navigate(base + "/portal/caami/?lang=en"))

	t.Run("another institution's pages are not found", func(t *testing.T) {
		for _, path := range []string{"/portal/ona/", "/portal/ona/invoices"} {
			c.run(chromedp.Navigate(base + path))
			if h := c.text("h1"); !strings.Contains(h, "does not exist") {
				t.Errorf("%s shows %q", path, h)
			}
		}
		c.accessible("not found")
	})

	t.Run("an issued invoice downloads with the API's total", func(t *testing.T) {
		e.clock.Set(time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)) // after November's grace period
		res, err := e.svc.Issue(context.Background(), billingtest.Period(), []string{"caami"}, "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		issued := res[0].Invoice
		c.signIn(base, caamiToken) // the clock moved past the session's life
		c.run(chromedp.Navigate(base + "/portal/caami/invoices"))
		c.accessible("en invoices")
		c.screenshot("invoices-en")
		var doc struct {
			Number string
			Totals struct{ Payable string }
		}
		if err := json.Unmarshal(c.download(`a[href$=".json"]`), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Number != issued.Number || doc.Totals.Payable != issued.Totals.Payable.StringFixed(2) {
			t.Errorf("the JSON download is %s for %s, the issued invoice %s for %s", doc.Number, doc.Totals.Payable, issued.Number, issued.Totals.Payable.StringFixed(2))
		}
		if pdf := c.download(`a[href$=".pdf"]`); !bytes.HasPrefix(pdf, []byte("%PDF-")) {
			t.Errorf("the PDF download starts %q", pdf[:min(len(pdf), 8)])
		}
	})

	t.Run("the keyboard skips to the content and signs out", func(t *testing.T) {
		c.run(chromedp.Navigate(base+"/portal/caami/"), chromedp.KeyEvent(kb.Tab))
		if first := eval[string](c, `document.activeElement.textContent.trim()`); first != "Skip to content" {
			t.Errorf("the first Tab focuses %q, want the skip link", first)
		}
		for i := 0; ; i++ {
			c.run(chromedp.KeyEvent(kb.Tab))
			if eval[string](c, `document.activeElement.textContent.trim()`) == "Sign out" {
				break
			}
			if i == 20 {
				t.Fatal("twenty Tab presses never reach the sign-out button")
			}
		}
		c.run(chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.ID("token")))
		c.run(chromedp.Navigate(base + "/portal/caami/"))
		if url := value(c, chromedp.Location()); !strings.HasSuffix(url, "/portal/login") {
			t.Errorf("after signing out, the month's page is at %s, want the sign-in", url)
		}
	})
}
