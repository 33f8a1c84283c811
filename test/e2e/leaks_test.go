package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// rawAuditPath is Vault's second audit device, with log_raw on: every token,
// accessor, login JWT and response value the suite used, in clear.
func rawAuditPath() string { return filepath.Join(bed.dir, "raw-audit.log") }

// unsealKey is how the dev server prints its unseal key at start.
var unsealKey = regexp.MustCompile(`Unseal Key: (\S+)`)

// checkLeaks looks for every secret the suite used — from the raw audit log,
// the seeded scenario, Vault's unseal key and the provider's HMAC key — in
// the provider's log (written at trace level) and in the errors it returned
// to the driver (the driver logs each as an "rpc error").
func checkLeaks() error {
	secrets, err := testbed.AuditedSecrets(rawAuditPath())
	if err != nil {
		return fmt.Errorf("leak check: %w", err)
	}
	if sc := bed.vault.Scenario(); sc != nil {
		for _, v := range sc.SecretData {
			secrets = append(secrets, v)
		}
		// The scenario's username is its service account's name, "testapp",
		// which the log names as the class: a name, not a secret.
		secrets = slices.DeleteFunc(secrets, func(s string) bool {
			return s == sc.ServiceAccount || s == sc.Role || s == sc.Namespace
		})
	}
	if m := unsealKey.FindStringSubmatch(bed.vault.Logs()); m != nil {
		secrets = append(secrets, m[1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s, err := bed.kube.Client.CoreV1().Secrets(testbed.ProviderNamespace).Get(ctx, "vault-csi-provider-hmac-key", metav1.GetOptions{}); err == nil {
		secrets = append(secrets, string(s.Data["key"]))
	}

	logs := bed.provider.Logs()
	var returned []string
	for line := range strings.Lines(bed.driver.Logs()) {
		if strings.Contains(line, "rpc error") {
			returned = append(returned, line)
		}
	}
	// A check that saw nothing proves nothing.
	if len(secrets) < 10 || !strings.Contains(logs, `"msg":"mount"`) {
		return fmt.Errorf("leak check: only %d secrets harvested, or no mount logged: the check would be empty", len(secrets))
	}
	leaks := testbed.FindLeaks(map[string]string{"provider log": logs, "errors returned to the driver": strings.Join(returned, "")}, secrets)
	if len(leaks) == 0 {
		fmt.Fprintf(os.Stdout, "e2e: leak check: %d secrets, none in %d bytes of provider log or %d returned errors\n", len(secrets), len(logs), len(returned))
		return nil
	}
	errs := make([]error, len(leaks))
	for i, l := range leaks {
		errs[i] = errors.New(l.String())
	}
	return fmt.Errorf("leak check: %w", errors.Join(errs...))
}
