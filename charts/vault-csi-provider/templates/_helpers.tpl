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
