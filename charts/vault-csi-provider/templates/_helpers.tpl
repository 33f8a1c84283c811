{{/* The chart name, or nameOverride. */}}
{{- define "vault-csi-provider.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object name prefix: fullnameOverride, else <release>-<name> (just
<release> when it already holds the name). */}}
{{- define "vault-csi-provider.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "vault-csi-provider.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the provider's pods; never change them on upgrade. */}}
{{- define "vault-csi-provider.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vault-csi-provider.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "vault-csi-provider.labels" -}}
{{ include "vault-csi-provider.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "vault-csi-provider.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The HMAC key Secret's name: the provider's default unless set. */}}
{{- define "vault-csi-provider.hmacSecretName" -}}
{{- .Values.hmacSecretName | default "vault-csi-provider-hmac-key" }}
{{- end }}

{{/* Where the Vault CA bundle is mounted in the container. */}}
{{- define "vault-csi-provider.caDir" -}}
/etc/vault-csi-provider/tls
{{- end }}

{{/* True (non-empty) when a Vault CA bundle is configured; fails on both sources. */}}
{{- define "vault-csi-provider.hasCA" -}}
{{- $ca := .Values.vault.tls.caCert }}
{{- if and $ca.secretName $ca.configMapName }}
{{- fail "vault.tls.caCert: set secretName or configMapName, not both" }}
{{- end }}
{{- if or $ca.secretName $ca.configMapName }}true{{ end }}
{{- end }}

{{/* A value written as YAML or, as vault-helm allows, as a string of YAML
rendered with tpl. Called with (list value $). */}}
{{- define "vault-csi-provider.tplYaml" -}}
{{- $v := index . 0 }}
{{- if kindIs "string" $v }}
{{- tpl $v (index . 1) | trim }}
{{- else }}
{{- toYaml $v }}
{{- end }}
{{- end }}

{{/* The pull secrets' names: global.imagePullSecrets, then imagePullSecrets,
each a name or {name: ...}, once each. */}}
{{- define "vault-csi-provider.imagePullSecrets" -}}
{{- $names := list }}
{{- range concat (.Values.global.imagePullSecrets | default list) (.Values.imagePullSecrets | default list) }}
{{- if kindIs "string" . }}
{{- $names = append $names . }}
{{- else }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}
{{- range uniq $names }}
- name: {{ . }}
{{- end }}
{{- end }}

{{/* Values copied from vault-helm's csi: section that cannot mean here what
they meant there: fail with what to do instead. */}}
{{- define "vault-csi-provider.checkCopiedValues" -}}
{{- if and (hasKey .Values "enabled") (not .Values.enabled) }}
{{- fail "enabled: false: this chart installs only the provider and has no off switch; leave enabled out, or helm uninstall the release" }}
{{- end }}
{{- if hasSuffix "hashicorp/vault-csi-provider" .Values.image.repository }}
{{- fail (printf "image.repository %s is the provider this chart replaces, and it does not take this chart's arguments: leave image out of the values copied from vault-helm's csi: section (the chart's default is its own image)" .Values.image.repository) }}
{{- end }}
{{- end }}

{{/* The addresses -allowed-vault-addresses gets: the list, else the
configured Vault alone (a class naming another server could otherwise turn
the provider and its pods' tokens on it), unless allowAnyVaultAddress; ""
when any address is allowed. */}}
{{- define "vault-csi-provider.allowedVaultAddresses" -}}
{{- $vaultAddr := .Values.vault.address | default .Values.global.externalVaultAddr }}
{{- if .Values.allowedVaultAddresses }}
{{- join "," .Values.allowedVaultAddresses }}
{{- else if and $vaultAddr (not .Values.allowAnyVaultAddress) }}
{{- $vaultAddr }}
{{- end }}
{{- end }}
