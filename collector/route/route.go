// Package route is what an endpoint of the collector's tenants' listener
// declares: its method, pattern, access and handler. The collector keeps the
// one table that authenticates, checks tenants and audits every route, its
// own and those other domains contribute (billing/billinghttp,
// sla/slahttp): a domain says who may call its route, never how that is
// checked. The package also holds what every handler answers with: the JSON
// error body and the parameter parsing the routes share.
package route

import (
	"net/http"

	"github.com/paasmeter/paasmeter/collector/auth"
)

// Access says who may call a route.
type Access int

// Access levels.
const (
	// Public routes need no token (health checks).
	Public Access = iota
	// AgentWrite routes need an agent token; handlers check the node binding.
	AgentWrite
	// TenantRead routes have a {tenant} path segment and need a token that may
	// read that tenant: its institution's or an admin's. The check lives in
	// the collector's table, so no route can forget it; so does the audit of
	// operators' (admin tokens') reads, which fails closed.
	TenantRead
	// OrgRead routes are Loki's reads: the tenant is named by the
	// X-Scope-OrgID header instead of the path, and checked as for
	// TenantRead. The table sets it as the request's "tenant" path value.
	OrgRead
	// OrgWrite routes are Loki's push: the tenant named by X-Scope-OrgID is
	// written by that tenant's institution token (its own applications
	// shipping logs) or by an agent token, whose node binding the handler
	// checks as for AgentWrite.
	OrgWrite
	// AdminOnly routes are the platform's own settings (maintenance
	// windows), read or written by admin tokens only: no institution's
	// token, not even for its own windows. They name no tenant in the path;
	// a handler checks a tenant it is given.
	AdminOnly
)

// Handler serves a request the table has authenticated and authorized; p is
// the caller (the zero Principal on a Public route).
type Handler func(w http.ResponseWriter, r *http.Request, p auth.Principal)

// Route is one endpoint of the tenants' listener.
type Route struct {
	Method  string
	Pattern string
	Access  Access
	Handle  Handler
}

// Requires returns h when the collector has what h serves, and otherwise a
// handler that answers 501 with why: a domain declares, in its table, which
// of its routes need an optional part, instead of each handler checking.
func Requires(has bool, why string, h Handler) Handler {
	if has {
		return h
	}
	return func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) {
		WriteError(w, http.StatusNotImplemented, why, nil)
	}
}
