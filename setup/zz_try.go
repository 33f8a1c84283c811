package setup

import _ "github.com/bank-vaults/vault-operator/pkg/apis/vault/v1alpha1"
import _ "helm.sh/helm/v3/pkg/action"
import _ "github.com/hashicorp/hcl"
