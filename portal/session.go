package portal

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/paasmeter/paasmeter/collector/auth"
)

// session is one signed-in person's: who, until when, and the token its
// forms must carry (CSRF).
type session struct {
	// id is the session's cookie value.
	id        string
	principal auth.Principal
	// role is the person's portal role: RoleViewer or RoleFinance.
	role string
	csrf string
	// started bounds the session's life (ttl); seen its idleness (idle).
	started, seen time.Time
	// n orders the sessions by sign-in: the oldest is ended first (many
	// sign-ins share a clock reading).
	n uint64
}

// sessions are kept in the collector's memory, by random id: signing out
// ends one at once, and a restart ends them all. A session ends after ttl,
// or idle without a page. Their number is bounded, per principal and in
// all, and a new sign-in makes room by ending the oldest session rather
// than being refused: one institution signing in over and over ends only
// its own sessions, and can never lock the others out.
type sessions struct {
	mu           sync.Mutex
	count        uint64 // sessions ever started, for session.n
	byID         map[string]*session
	ttl, idle    time.Duration
	limit, perPr int
}

// randomID returns 256 random bits, URL-safe.
func randomID() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) live(ss *session, now time.Time) bool {
	return now.Sub(ss.started) < s.ttl && now.Sub(ss.seen) < s.idle
}

// start opens a session for p in role and returns its id.
func (s *sessions) start(p auth.Principal, role string, now time.Time) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mine, oldestMine, oldest := 0, "", ""
	for id, ss := range s.byID {
		if !s.live(ss, now) {
			delete(s.byID, id)
			continue
		}
		if ss.principal.Name == p.Name {
			mine++
			if oldestMine == "" || ss.n < s.byID[oldestMine].n {
				oldestMine = id
			}
		}
		if oldest == "" || ss.n < s.byID[oldest].n {
			oldest = id
		}
	}
	switch {
	case mine >= s.perPr:
		delete(s.byID, oldestMine)
	case len(s.byID) >= s.limit:
		delete(s.byID, oldest)
	}
	id := randomID()
	s.count++
	ss := &session{id: id, principal: p, role: role, csrf: randomID(), started: now, seen: now, n: s.count}
	s.byID[id] = ss
	return id, ss
}

// get returns the live session of id, and counts the page as activity.
func (s *sessions) get(id string, now time.Time) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	if !s.live(ss, now) {
		delete(s.byID, id)
		return nil, false
	}
	ss.seen = now
	return ss, true
}

// end closes the session of id.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// sameToken compares two CSRF tokens in constant time.
func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
