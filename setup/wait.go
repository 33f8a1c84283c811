package setup

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/okevault/vault-csi-provider/setup/deploy"
)

// What apply waits for between deploy and configure, when setup reaches the
// Vault it deployed: the operators' Deployments available, the etcd
// members ready, Vault's pods initialised and unsealed with an active one.

// progressEvery bounds how often a wait reports its progress.
const progressEvery = 10 * time.Second

// condition reports whether what is waited for holds, and how far it is
// ("1/3 pods ready, 0 unsealed").
type condition func(ctx context.Context) (done bool, status string, err error)

// waitUntil polls cond every poll until it holds, printing its status at
// most every progressEvery (and when it is reached). On timeout the error
// names what never became ready and how far it got.
func (r *Runner) waitUntil(ctx context.Context, what string, deadline time.Time, poll time.Duration, cond condition) error {
	start := time.Now()
	var lastPrint time.Time
	for {
		done, status, err := cond(ctx)
		switch {
		case err != nil:
			status = "error: " + oneLine(err.Error())
		case status == "":
			status = "ready"
		}
		elapsed := time.Since(start).Round(time.Second)
		if done {
			r.printf("waited for %s: %s (%s)\n", what, status, elapsed)
			return nil
		}
		if time.Since(lastPrint) >= progressEvery {
			r.printf("waiting for %s: %s (%s)\n", what, status, elapsed)
			lastPrint = time.Now()
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return fmt.Errorf("timed out after %s waiting for %s: %s", elapsed, what, status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (%s)", what, ctx.Err(), status)
		case <-time.After(min(poll, wait)):
		}
	}
}

// setupSelector selects what deploy applied for this setup.
func (r *Runner) setupSelector() string {
	return fmt.Sprintf("%s=%s,%s=%s", deploy.LabelManagedBy, FieldManager, deploy.LabelSetup, r.Prepared.Name)
}

// deploymentsAvailable: every Deployment deploy applied (the operators) has
// its replicas updated and available.
func deploymentsAvailable(cs kubernetes.Interface, selector string) condition {
	return func(ctx context.Context) (bool, string, error) {
		list, err := cs.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, "", err
		}
		var parts []string
		ok := true
		for i := range list.Items {
			d := &list.Items[i]
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			avail := d.Status.AvailableReplicas
			if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas < want || avail < want {
				ok = false
			}
			parts = append(parts, fmt.Sprintf("%s/%s %d/%d available", d.Namespace, d.Name, avail, want))
		}
		return ok, strings.Join(parts, ", "), nil
	}
}

// etcdReady: the EtcdCluster's pods (etcd-operator v0.2.0 labels them
// app=<cluster name>) are as many as declared and all ready.
func etcdReady(cs kubernetes.Interface, ns string, e *deploy.Etcd) condition {
	return func(ctx context.Context) (bool, string, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + e.Name})
		if err != nil {
			return false, "", err
		}
		ready := 0
		for i := range pods.Items {
			if podReady(&pods.Items[i]) {
				ready++
			}
		}
		return ready >= e.Size, fmt.Sprintf("%d/%d members ready", ready, e.Size), nil
	}
}

// vaultReady: every Vault pod ready, initialised and unsealed, and one
// active, as Vault's Kubernetes service registration labels them.
func vaultReady(cs kubernetes.Interface, ns string, v *deploy.Vault) condition {
	return func(ctx context.Context) (bool, string, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: vaultPodSelector(v.Name)})
		if err != nil {
			return false, "", err
		}
		var ready, initialised, unsealed, active int
		for i := range pods.Items {
			p := &pods.Items[i]
			if podReady(p) {
				ready++
			}
			if p.Labels["vault-initialized"] == "true" {
				initialised++
			}
			if p.Labels["vault-sealed"] == "false" {
				unsealed++
			}
			if p.Labels["vault-active"] == "true" {
				active++
			}
		}
		n := int(v.Size)
		status := fmt.Sprintf("%d/%d pods ready, %d initialised, %d unsealed, %d active", ready, n, initialised, unsealed, active)
		return ready >= n && unsealed >= n && active == 1, status, nil
	}
}

// waitForCluster waits, in order, for what deploy made to run.
func (r *Runner) waitForCluster(ctx context.Context, deadline time.Time) error {
	cs, err := kubernetes.NewForConfig(r.Kube)
	if err != nil {
		return err
	}
	d := r.Prepared.Deploy
	if err := r.waitUntil(ctx, "the operators' Deployments", deadline, 2*time.Second, deploymentsAvailable(cs, r.setupSelector())); err != nil {
		return err
	}
	if d.Vault.Etcd != nil {
		what := fmt.Sprintf("etcd %s/%s", d.Namespace, d.Vault.Etcd.Name)
		if err := r.waitUntil(ctx, what, deadline, 2*time.Second, etcdReady(cs, d.Namespace, d.Vault.Etcd)); err != nil {
			return err
		}
	}
	what := fmt.Sprintf("Vault %s/%s", d.Namespace, d.Vault.Name)
	return r.waitUntil(ctx, what, deadline, 2*time.Second, vaultReady(cs, d.Namespace, &d.Vault))
}
