#!/usr/bin/env bash
# pki.sh DIR NODE NODE_IP: a self-signed PKI for the test cluster in DIR (a
# CA, the apiserver's serving certificate, a client certificate for each
# component and the admin, the ServiceAccount signing keys). Made anew with
# each cluster: nothing outside this machine trusts it.
set -euo pipefail
D=$1 NODE=$2 NODE_IP=$3
cd "$D"
days=3650
openssl genrsa -out ca.key 2048
openssl req -x509 -new -nodes -key ca.key -subj "/CN=paasmeter-test-ca" -days $days -out ca.crt
cert() { # name subject extensions
	openssl genrsa -out "$1.key" 2048
	openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
	printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days $days -extfile "$1.ext" -out "$1.crt"
	rm -f "$1.csr" "$1.ext"
}
# The apiserver is reached at 127.0.0.1 (tests, components, hostNetwork pods),
# at the node's address, and by the kubernetes Service's names and IP.
cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:$NODE,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_IP"
cert admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
# The Node authorizer knows the kubelet by this name.
cert kubelet "/O=system:nodes/CN=system:node:$NODE" "extendedKeyUsage=clientAuth"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
openssl genrsa -out sa.key 2048
openssl rsa -in sa.key -pubout -out sa.pub
