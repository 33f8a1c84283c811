package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestFailedRemountShowsWhereDocsSay rotates a secret while the pod's role
// may no longer read it, on the cluster bed's driver v1.6.0, and checks
// each place docs/troubleshooting.md ("Rotation and remounts", driver
// v1.6.0) sends a user, through the commands it gives: the provider's log
// has a "mount failed" line for the pod with its code, the driver's log a
// "failed to mount secrets store object content" line with
// isRemountRequest=true, its node_publish_error_total{provider="vault"}
// grows, the SecretProviderClassPodStatus keeps the old version, the pod
// keeps its old file and gets no event. Once the policy reads again, the
// next remount writes the new version and the status follows.
func TestFailedRemountShowsWhereDocsSay(t *testing.T) {
	c := shared(t)
	s := bed.vault.Scenario()
	path := s.SecretPath + "/remount"
	policy := func(readable string) {
		t.Helper()
		rules := fmt.Sprintf("path %q {\n  capabilities = [\"read\"]\n}\n", "secret/data/"+readable)
		if err := bed.vault.Client.Sys().PutPolicyWithContext(t.Context(), "remount", rules); err != nil {
			t.Fatal(err)
		}
	}
	policy(path)
	if _, err := bed.vault.Client.Logical().WriteWithContext(t.Context(), "auth/"+s.AuthMount+"/role/remount", map[string]any{
		"bound_service_account_names": s.ServiceAccount, "bound_service_account_namespaces": s.Namespace,
		"audience": s.Audience, "token_policies": "remount", "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	kv := bed.vault.Client.KVv2(s.KVMount)
	if _, err := kv.Put(t.Context(), path, map[string]any{"token": "v1"}); err != nil {
		t.Fatal(err)
	}
	applyClass(t, c, s.Namespace, "remount", map[string]string{
		"roleName": "remount",
		"objects":  "- objectName: token\n  secretPath: secret/data/" + path + "\n  secretKey: token\n",
	})
	pod := createPod(t, c, s.Namespace, "remount", podSpec(s.ServiceAccount, "remount"))
	t.Cleanup(func() { deleteAndWait(t, c, s.Namespace, pod.Name) })
	waitPodReady(t, c, s.Namespace, pod.Name, 2*time.Minute)
	// The docs' command for the pod's status object.
	status := func() string {
		return kubectl(t, c, "get", "secretproviderclasspodstatus", pod.Name+"-"+s.Namespace+"-remount", "-n", s.Namespace, "-o", "jsonpath={.status.objects}")
	}
	before := status()
	if !strings.Contains(before, `"version":"kv2:1:`) {
		t.Fatalf("the pod's status objects: %s, want version 1", before)
	}
	errorsBefore := publishErrors(t, c)

	// Break the remount: the role may no longer read the secret, which
	// gets a new version.
	policy(s.SecretPath + "/elsewhere")
	if _, err := kv.Put(t.Context(), path, map[string]any{"token": "v2"}); err != nil {
		t.Fatal(err)
	}
	since := time.Now()
	eventually(t, 30*rotationPoll, "the driver logs a failed remount for the pod", func() (bool, string) {
		// The docs' command for the driver's log.
		log := kubectl(t, c, "logs", "-n", testbed.DriverNamespace, "-c", "secrets-store", "--tail=400", "-l", "app=secrets-store-csi-driver")
		for line := range strings.SplitSeq(log, "\n") {
			if strings.Contains(line, "failed to mount secrets store object content") && strings.Contains(line, "isRemountRequest=true") &&
				strings.Contains(line, `pod="`+s.Namespace+"/"+pod.Name+`"`) && strings.Contains(line, "PermissionDenied") {
				return true, line
			}
		}
		return false, "no such line"
	})
	// The docs' command for the provider's log.
	log := kubectl(t, c, "logs", "-n", testbed.ProviderNamespace, "--tail=400", "-l", "app.kubernetes.io/name=vault-csi-provider,app.kubernetes.io/instance=vault-csi-provider")
	var failed bool
	for line := range strings.SplitSeq(log, "\n") {
		failed = failed || (strings.Contains(line, `"msg":"mount failed"`) && strings.Contains(line, `"code":"PermissionDenied"`) && strings.Contains(line, `"pod":"`+pod.Name+`"`))
	}
	if !failed {
		t.Errorf("the provider's log has no \"mount failed\" PermissionDenied line for %s:\n%s", pod.Name, log)
	}
	if after := publishErrors(t, c); after <= errorsBefore {
		t.Errorf("node_publish_error_total{provider=\"vault\"}: %d before the failed remounts, %d after; want it to grow", errorsBefore, after)
	}
	if got := status(); got != before {
		t.Errorf("the status objects changed though every remount failed: %s, was %s", got, before)
	}
	if got := readFile(t, c, s.Namespace, pod.Name, "token"); got != "v1" {
		t.Errorf("the pod's file is %q after failed remounts, want the old v1", got)
	}
	for _, e := range events(t, c, s.Namespace, pod.Name) {
		if e.LastTimestamp.After(since) || e.EventTime.After(since) {
			t.Errorf("an event on the pod after the failed remounts (the docs say none): %s %s", e.Reason, e.Message)
		}
	}

	// Mend it: the next remount writes v2 and the status follows.
	policy(path)
	eventually(t, 30*rotationPoll, "the pod's file rotated to v2 once the policy reads again", func() (bool, string) {
		got := readFile(t, c, s.Namespace, pod.Name, "token")
		return got == "v2", got
	})
	if got := status(); !strings.Contains(got, `"version":"kv2:2:`) {
		t.Errorf("the status objects after the remount that worked: %s, want version 2", got)
	}
}

// publishErrors is the driver's node_publish_error_total for provider vault,
// summed over error types, read from its metrics port (8095) on its pod's IP
// as the docs' port-forward would.
func publishErrors(t *testing.T, c *testbed.Cluster) int {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(testbed.DriverNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app=secrets-store-csi-driver"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("driver pods: %v (%d)", err, len(pods.Items))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+pods.Items[0].Status.PodIP+":8095/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "node_publish_error_total{") && strings.Contains(line, `provider="vault"`) {
			var n float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n); err == nil {
				total += int(n)
			}
		}
	}
	return total
}
