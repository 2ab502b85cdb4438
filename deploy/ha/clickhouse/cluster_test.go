// Package clickhouse_test checks the HA example's ClickHouse and ZooKeeper
// configuration against itself: every server's macros name a replica of the
// shard remote_servers puts it in, each once, and the servers' ZooKeeper is
// the ensemble zoo.cfg describes. The same layout runs for real in the
// metering/clickhouse tests (chserver.StartReplicated, on loopback).
package clickhouse_test

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

type clusterConfig struct {
	Shards []struct {
		InternalReplication bool `xml:"internal_replication"`
		Replicas            []struct {
			Host string `xml:"host"`
			Port int    `xml:"port"`
		} `xml:"replica"`
	} `xml:"remote_servers>paasmeter>shard"`
	ZooKeeper []struct {
		Host string `xml:"host"`
		Port int    `xml:"port"`
	} `xml:"zookeeper>node"`
	DDLPath string `xml:"distributed_ddl>path"`
}

type macros struct {
	Shard           int    `xml:"macros>shard"`
	Replica         string `xml:"macros>replica"`
	InterserverHost string `xml:"interserver_http_host"`
}

func decode(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestEveryServerIsOneReplicaOfTheShardItsMacrosName(t *testing.T) {
	var c clusterConfig
	decode(t, "config.d/paasmeter-cluster.xml", &c)
	if len(c.Shards) != 2 || c.DDLPath == "" {
		t.Fatalf("paasmeter-cluster.xml: %d shards, distributed_ddl %q; want 2 shards and a DDL queue", len(c.Shards), c.DDLPath)
	}
	where := map[string]int{} // host → shard
	for i, s := range c.Shards {
		if !s.InternalReplication || len(s.Replicas) != 2 {
			t.Errorf("shard %d: internal_replication %v, %d replicas; want true and 2", i+1, s.InternalReplication, len(s.Replicas))
		}
		for _, r := range s.Replicas {
			if _, dup := where[r.Host]; dup || r.Port != 9000 {
				t.Errorf("shard %d: replica %s:%d listed twice or not on the native port", i+1, r.Host, r.Port)
			}
			where[r.Host] = i + 1
		}
	}
	files, err := filepath.Glob("macros/*.xml")
	if err != nil || len(files) != len(where) {
		t.Fatalf("macros/: %v (%v); want one file per server of remote_servers (%d)", files, err, len(where))
	}
	for _, f := range files {
		var m macros
		decode(t, f, &m)
		host := filepath.Base(f[:len(f)-len(".xml")])
		if m.Replica != host || m.InterserverHost != host || where[host] != m.Shard {
			t.Errorf("%s: replica %q, interserver host %q, shard %d; remote_servers has %s in shard %d", f, m.Replica, m.InterserverHost, m.Shard, host, where[host])
		}
	}

	zoo, err := os.ReadFile("../zookeeper/zoo.cfg")
	if err != nil {
		t.Fatal(err)
	}
	var ensemble []string
	for _, m := range regexp.MustCompile(`(?m)^server\.\d+=([^:]+):`).FindAllStringSubmatch(string(zoo), -1) {
		ensemble = append(ensemble, m[1])
	}
	var nodes []string
	for _, n := range c.ZooKeeper {
		nodes = append(nodes, fmt.Sprintf("%s:%d", n.Host, n.Port))
		if !slices.Contains(ensemble, n.Host) || n.Port != 2181 {
			t.Errorf("ClickHouse's ZooKeeper node %s:%d is not in zoo.cfg's ensemble %v on its clientPort", n.Host, n.Port, ensemble)
		}
	}
	if len(nodes) != len(ensemble) || len(ensemble)%2 != 1 {
		t.Errorf("ClickHouse knows ZooKeeper nodes %v of the ensemble %v: want all of an odd-sized ensemble", nodes, ensemble)
	}
}
