package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

func TestPlan(t *testing.T) {
	cfg := defaultConfig()
	cfg.ServiceAccounts, cfg.Pods, cfg.Objects, cfg.Secrets = 3, 7, 5, 2
	p, err := newPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.identities) != 3 || len(p.pods) != 7 || len(p.secrets) != 2+3 {
		t.Fatalf("%d identities, %d pods, %d secrets; want 3, 7, 5", len(p.identities), len(p.pods), len(p.secrets))
	}
	id := p.identities[1]
	var got []object
	got = append(got, id.objects...)
	want := []object{
		{Name: "00-own-key-0", Path: "bench/data/own/sa-1", Key: "key-0"},
		{Name: "01-shared-1-key-0", Path: "bench/data/shared/1", Key: "key-0"},
		{Name: "02-own-key-1", Path: "bench/data/own/sa-1", Key: "key-1"},
		{Name: "03-shared-0-key-1", Path: "bench/data/shared/0", Key: "key-1"},
		{Name: "04-own-key-2", Path: "bench/data/own/sa-1", Key: "key-2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects of sa-1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"bench/data/own/sa-1", "bench/data/shared/1", "bench/data/shared/0"}, id.paths); diff != "" {
		t.Errorf("paths of sa-1 (-want +got):\n%s", diff)
	}
	for _, path := range id.paths {
		if !strings.Contains(id.policyHCL(), `path "`+path+`"`) {
			t.Errorf("policy of sa-1 does not grant %s:\n%s", path, id.policyHCL())
		}
	}
	if p.pods[4].id != p.identities[1] {
		t.Errorf("pod-4 runs as %s, want sa-1 (round-robin)", p.pods[4].id.sa)
	}
	if got, want := p.floorReads(), 3*3; got != want {
		t.Errorf("floorReads = %d, want %d", got, want)
	}
	if got, want := p.mountReads(), 7*3; got != want {
		t.Errorf("mountReads = %d, want %d", got, want)
	}
	for path, data := range p.secrets {
		size := 0
		for _, v := range data {
			size += len(v)
		}
		if len(data) != secretKeys || size != 1000 {
			t.Errorf("%s: %d keys, %d bytes; want %d keys, 1000 bytes", path, len(data), size, secretKeys)
		}
	}
}

func TestAttributes(t *testing.T) {
	cfg := defaultConfig()
	cfg.ServiceAccounts, cfg.Pods, cfg.Objects = 1, 1, 2
	p, err := newPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pd := p.pods[0]
	pd.uid, pd.token, pd.expires = "uid-0", "header.payload.sig", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	pd.setTargetPath("/var/lib/kubelet")
	params, err := pd.id.classParameters("http://127.0.0.1:8200")
	if err != nil {
		t.Fatal(err)
	}
	common := map[string]string{
		"roleName":     "bench-sa-0",
		"vaultAddress": "http://127.0.0.1:8200",
		"objects": "- objectName: 00-own-key-0\n  secretPath: bench/data/own/sa-0\n  secretKey: key-0\n" +
			"- objectName: 01-shared-0-key-0\n  secretPath: bench/data/shared/0\n  secretKey: key-0\n",
		attrPodName:        "pod-0",
		attrPodNamespace:   "bench",
		attrPodUID:         "uid-0",
		attrServiceAccount: "sa-0",
		attrTokens:         `{"vault":{"expirationTimestamp":"2030-01-02T03:04:05Z","token":"header.payload.sig"}}`,
	}
	publish := map[string]string{attrClass: "bench-sa-0", attrEphemeral: "true"}
	for k, v := range common {
		publish[k] = v
	}
	for _, tc := range []struct {
		name    string
		publish bool
		want    map[string]string
	}{
		{"NodePublishVolume", true, publish},
		{"rotation", false, common},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := pd.attributes(params, tc.publish)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]string
			if err := json.Unmarshal([]byte(s), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("attributes (-want +got):\n%s", diff)
			}
		})
	}
	if want := "/var/lib/kubelet/pods/uid-0/volumes/kubernetes.io~csi/secrets-store-inline/mount"; pd.targetPath != want {
		t.Errorf("target path %q, want %q", pd.targetPath, want)
	}
}

func TestCheckFiles(t *testing.T) {
	want := map[string]string{"a": "1", "b": "2"}
	versions := []*v1alpha1.ObjectVersion{{Id: "a", Version: "v"}}
	files := func(kv ...string) []*v1alpha1.File {
		var fs []*v1alpha1.File
		for i := 0; i < len(kv); i += 2 {
			fs = append(fs, &v1alpha1.File{Path: kv[i], Contents: []byte(kv[i+1])})
		}
		return fs
	}
	for _, tc := range []struct {
		name string
		resp *v1alpha1.MountResponse
		want string // a part of the difference; "" for none
	}{
		{"right", &v1alpha1.MountResponse{ObjectVersion: versions, Files: files("a", "1", "b", "2")}, ""},
		{"no versions", &v1alpha1.MountResponse{Files: files("a", "1", "b", "2")}, "no object versions"},
		{"missing", &v1alpha1.MountResponse{ObjectVersion: versions, Files: files("a", "1")}, `"b" missing`},
		{"wrong", &v1alpha1.MountResponse{ObjectVersion: versions, Files: files("a", "1", "b", "s3cr3t")}, `"b" holds something other`},
		{"extra", &v1alpha1.MountResponse{ObjectVersion: versions, Files: files("a", "1", "b", "2", "c", "3")}, "3 files, want 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkFiles(tc.resp, want)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("checkFiles = %q, want %q", got, tc.want)
			}
			if strings.Contains(got, "s3cr3t") {
				t.Errorf("checkFiles reveals a value: %q", got)
			}
		})
	}
}

func TestLatency(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Millisecond)
	}
	want := Latency{P50: 50, P90: 90, P95: 95, P99: 99, Max: 100, Mean: 50.5}
	if diff := cmp.Diff(want, latency(d)); diff != "" {
		t.Errorf("latency (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Latency{P50: 7, P90: 7, P95: 7, P99: 7, Max: 7, Mean: 7}, latency([]time.Duration{7 * time.Millisecond})); diff != "" {
		t.Errorf("latency of one (-want +got):\n%s", diff)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := parseFlags(nil, &strings.Builder{}); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for _, args := range [][]string{
		{"-sas=0"}, {"-pods=3", "-sas=4"}, {"-objects=0"}, {"-secrets=0"}, {"-concurrency=0"}, {"-rounds=-1"}, {"-mount-timeout=0s"}, {"extra"},
	} {
		if _, err := parseFlags(args, &strings.Builder{}); err == nil {
			t.Errorf("parseFlags(%q): no error", args)
		}
	}
}

func TestPlanDynamic(t *testing.T) {
	cfg := defaultConfig()
	cfg.ServiceAccounts, cfg.Pods, cfg.Objects, cfg.Secrets, cfg.Dynamic = 2, 4, 2, 1, true
	p, err := newPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	id := p.identities[0]
	last := id.objects[len(id.objects)-1]
	if len(id.objects) != 3 || !last.dynamic() || last.Method != "PUT" || last.Args["common_name"] != "sa-0.bench.example.com" {
		t.Fatalf("objects %+v, want the two KV objects and the certificate", id.objects)
	}
	if slices.Contains(id.paths, pkiIssue) || p.floorReads() != 2*2 {
		t.Errorf("the certificate counts as a KV read: paths %v, floor reads %d", id.paths, p.floorReads())
	}
	if !strings.Contains(id.policyHCL(), `path "`+pkiIssue+`" {
  capabilities = ["update"]`) {
		t.Errorf("policy does not allow issuing:\n%s", id.policyHCL())
	}
	params, err := id.classParameters("http://vault")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(params["objects"], "method: PUT") || !strings.Contains(params["objects"], "secretArgs:") {
		t.Errorf("objects parameter lacks the certificate's method and arguments:\n%s", params["objects"])
	}
	resp := &v1alpha1.MountResponse{
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "x", Version: "1"}},
		Files: []*v1alpha1.File{
			{Path: id.objects[0].Name, Contents: []byte(p.want(id)[id.objects[0].Name])},
			{Path: id.objects[1].Name, Contents: []byte(p.want(id)[id.objects[1].Name])},
			{Path: "dynamic.crt", Contents: []byte(certPrefix + "\nMIIB...")},
		},
	}
	if d := checkFiles(resp, p.want(id)); d != "" {
		t.Errorf("checkFiles of a mount with a certificate: %s", d)
	}
	resp.Files[2].Contents = []byte("not a certificate")
	if d := checkFiles(resp, p.want(id)); d == "" {
		t.Error("checkFiles accepted a certificate file that holds no certificate")
	}
}
