package peer

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// kubectlRun runs the bed's kubectl with stdin and returns its stdout and,
// on failure, an error with its stderr. Arguments that hold a URL (they
// may carry credentials) are not repeated in the error.
func kubectlRun(ctx context.Context, c *testbed.Cluster, stdin []byte, args ...string) (string, error) {
	bin, err := testbed.Bin("kubectl")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", c.KubeconfigPath}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		shown := make([]string, len(args))
		for i, a := range args {
			shown[i] = a
			if strings.Contains(a, "://") {
				shown[i] = "<url>"
			}
		}
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(shown, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// kubectl runs kubectl and returns its output as the bats file's
// result=$(kubectl ...) holds it: trailing newlines removed.
func kubectl(t *testing.T, c *testbed.Cluster, args ...string) string {
	t.Helper()
	out, err := kubectlRun(t.Context(), c, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(out, "\n")
}

// kubectlIn runs kubectl with stdin (apply -f -).
func kubectlIn(t *testing.T, c *testbed.Cluster, stdin []byte, args ...string) {
	t.Helper()
	if _, err := kubectlRun(t.Context(), c, stdin, args...); err != nil {
		t.Fatal(err)
	}
}

// kubectlQuiet runs kubectl for diagnostics: its output or its error.
func kubectlQuiet(ctx context.Context, c *testbed.Cluster, args ...string) string {
	out, err := kubectlRun(ctx, c, nil, args...)
	if err != nil {
		return out + err.Error()
	}
	return out
}

// helm runs the bed's helm.
func helm(t *testing.T, c *testbed.Cluster, args ...string) {
	t.Helper()
	if _, err := c.Helm(t.Context(), args...); err != nil {
		t.Fatal(err)
	}
}

// installNginx is `helm --namespace=NS install nginx $CONFIGS/nginx --set
// engine=E --set sa=SA [--wait --timeout=5m]` with the adapted chart.
func installNginx(t *testing.T, c *testbed.Cluster, ns, engine, sa string, wait bool) {
	t.Helper()
	args := []string{"--namespace=" + ns, "install", "nginx", bed.charts + "/nginx", "--set", "engine=" + engine, "--set", "sa=" + sa}
	if wait {
		args = append(args, "--wait", "--timeout=5m")
	}
	helm(t, c, args...)
}

// waitReady is `kubectl wait --for=condition=Ready pod -l selector`, which
// fails when nothing matches yet: here a poll until the selected pods exist
// and all are Ready.
func waitReady(t *testing.T, c *testbed.Cluster, ns, selector string, timeout time.Duration) {
	t.Helper()
	waitPods(t, c, ns, selector, corev1.PodReady, timeout)
}

// waitPods waits until the pods selected (a label selector, or
// "name=<pod>") exist and all have condition cond.
func waitPods(t *testing.T, c *testbed.Cluster, ns, selector string, cond corev1.PodConditionType, timeout time.Duration) {
	t.Helper()
	opts := metav1.ListOptions{LabelSelector: selector}
	if name, ok := strings.CutPrefix(selector, "name="); ok {
		opts = metav1.ListOptions{FieldSelector: "metadata.name=" + name}
	}
	testbed.Eventually(t, timeout, time.Second, fmt.Sprintf("pods %s in %s %s", selector, ns, cond), func() (bool, string) {
		pods, err := c.Client.CoreV1().Pods(ns).List(t.Context(), opts)
		if err != nil {
			return false, err.Error()
		}
		if len(pods.Items) == 0 {
			return false, "no pods"
		}
		for _, p := range pods.Items {
			if !hasCondition(&p, cond) {
				return false, fmt.Sprintf("pod %s: phase %s, conditions %v", p.Name, p.Status.Phase, p.Status.Conditions)
			}
		}
		return true, ""
	})
}

func hasCondition(p *corev1.Pod, typ corev1.PodConditionType) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == typ {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitForDescribe is the suite's
// wait_for_success "kubectl describe pod POD | grep 'PATTERN'": up to 60
// tries a second apart until a line of the pod's description matches.
func waitForDescribe(t *testing.T, c *testbed.Cluster, ns, pod, pattern string) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	testbed.Eventually(t, 61*time.Second, time.Second, fmt.Sprintf("describe pod %s/%s | grep %q", ns, pod, pattern), func() (bool, string) {
		out, err := kubectlRun(t.Context(), c, nil, "--namespace="+ns, "describe", "pod", pod)
		if err != nil {
			return false, err.Error()
		}
		for _, line := range strings.Split(out, "\n") {
			if re.MatchString(line) {
				return true, ""
			}
		}
		return false, "events:\n" + eventsOf(out)
	})
}

// eventsOf is the Events section of a kubectl describe output.
func eventsOf(describe string) string {
	if _, events, ok := strings.Cut(describe, "\nEvents:"); ok {
		return events
	}
	return describe
}

// envValue is `printenv | grep NAME | awk -F"=" '{ print $2 }' | tr -d '\r\n'`.
func envValue(printenv, name string) string {
	var b strings.Builder
	for _, line := range strings.Split(printenv, "\n") {
		if !strings.Contains(line, name) {
			continue
		}
		if fields := strings.Split(line, "="); len(fields) > 1 {
			b.WriteString(strings.Trim(fields[1], "\r"))
		}
	}
	return b.String()
}
